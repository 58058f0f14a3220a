// iterlock/priority.hpp: the acquisition priorities of iterlock's locks, and the calling thread's default.
//
// Owns: iterlock::priority, current_priority(), priority_scope, priority_name().
// Invariants:
//   - every thread starts at priority::best_effort;
//   - a priority_scope restores, when it ends, the value it found when it began, so scopes nest (the
//     innermost one wins) and a priority never leaks out of the block that set it;
//   - the value is per thread: setting it never affects another thread's acquisitions.
//
// Where it matters: a shard lock that is released while acquirers wait hands the lock to realtime waiters
// (writers, then iterations) before best-effort ones. See iterlock/detail/lock/shard_lock.hpp for the full
// order. Readers (finds) have no priority: they never queue behind other waiters.
#pragma once

#include <cstdint>
#include <string_view>

namespace iterlock {

// The priority an acquirer waits with. Ordered: realtime outranks best_effort.
enum class priority : std::uint8_t {
    best_effort = 0,  // the default: waits its turn behind realtime waiters
    realtime = 1,     // goes before every best_effort waiter when a lock is handed on
};

// A stable lowercase name for metric labels ("best_effort", "realtime"). O(1), noexcept.
constexpr std::string_view priority_name(priority p) noexcept {
    return p == priority::realtime ? std::string_view("realtime") : std::string_view("best_effort");
}

namespace detail {
// The calling thread's priority slot. A function-local thread_local so that every translation unit shares
// one slot per thread (an inline function has one definition program-wide).
inline priority& thread_priority_slot() noexcept {
    thread_local priority slot = priority::best_effort;
    return slot;
}
}  // namespace detail

// The calling thread's current priority: the one set by the innermost live priority_scope on this thread,
// or priority::best_effort when there is none. O(1) (one thread-local load), never blocks, noexcept.
inline priority current_priority() noexcept {
    return detail::thread_priority_slot();
}

// RAII setter of the calling thread's priority:
//     { iterlock::priority_scope p(iterlock::priority::realtime); m.insert_or_assign(k, v); }
// Construction saves the current value and installs `p`; destruction restores the saved value. Neither
// blocks nor throws. A scope must end on the thread that created it (it is neither copyable nor movable),
// and scopes must end in reverse order of creation, which block scoping guarantees.
class priority_scope {
  public:
    explicit priority_scope(priority p) noexcept : saved_(detail::thread_priority_slot()) {
        detail::thread_priority_slot() = p;
    }
    ~priority_scope() { detail::thread_priority_slot() = saved_; }

    priority_scope(const priority_scope&) = delete;
    priority_scope& operator=(const priority_scope&) = delete;
    priority_scope(priority_scope&&) = delete;
    priority_scope& operator=(priority_scope&&) = delete;

    // The priority that was current before this scope began (restored when it ends).
    priority previous() const noexcept { return saved_; }

  private:
    priority saved_;
};

}  // namespace iterlock
