// iterlock/detail/lock/shard_lock.hpp: the lock of one concurrent_map shard (readers, writers and
// iterations), and the whole of iterlock::iteration_lock's lock (iteration_lock.hpp wraps one;
// docs/DESIGN.md, "One iteration lock, two users").
//
// Owns: iterlock::detail::shard_lock, iterlock::detail::shard_lock_state, iterlock::detail::iteration_guard,
//       ITERLOCK_DETAIL_LOCK_CHECK.
// Invariants: grants follow the compatibility table and rules R1-R9 below; in the lock word (diagram under
//       "Implementation"), W implies iterations <= 1, Q equals "some waiter count is non-zero" whenever
//       mu_ is held, and seq grows by one each time W is set (check_invariants() checks the first two).
//
// Terminology. Each shard of a concurrent_map is a single-threaded Go map guarded by one shard_lock. The lock
// has three roles (and one transition):
//   reader     lock_shared() / unlock_shared(): a find. Short. Any number at once.
//              read_begin() / read_validate(): the optimistic (sequence-lock) form of a read: no store.
//   writer     lock() / unlock(): an insert, assign or erase. Short. Exclusive against everybody.
//   iteration  lock_iteration() / unlock_iteration(): a whole walk of the shard. Long. Any number of
//              iterations at once; readers too; no writer.
//   upgrade    upgrade_iteration_to_write() / downgrade_write_to_iteration(): the holder of the only
//              iteration of a shard writes to it during its walk (Go's "delete while ranging").
//
// Compatibility (may A be granted while B holds?):
//                   B = reader   B = writer   B = iteration   B = upgraded iteration
//   A = reader        yes          no            yes               no
//   A = writer        no           no            no                no
//   A = iteration     yes          no            yes               no
//
// Rules (MUST = guaranteed, MAY = allowed to happen):
//   R1. A reader MUST wait only while a writer or an upgraded iteration holds the lock. It never waits for a
//       waiting writer, a waiting iteration or a live iteration, whatever their priority.
//   R2. A writer MUST wait while any reader, iteration or writer holds the lock. Readers that keep arriving
//       MAY delay a writer for as long as they overlap (readers are finds; R1 is the price of cheap finds).
//   R3. Writer preference: while a writer waits, a new best-effort iteration MUST NOT get in (it queues),
//       so a stream of walks cannot starve writers. Iterations that already hold keep holding.
//   R4. Hand-off order: when the lock can be handed to waiters, it goes to the first waiting class in
//           1. realtime writers   2. realtime iterations   3. best-effort writers   4. best-effort iterations
//       A class further down the list waits while any class above it waits (even one that cannot be granted
//       yet). Writers go one at a time; all waiting iterations of the granted class go together. Hence a
//       realtime iteration arriving while only best-effort writers wait goes ahead of them as soon as no
//       writer holds (priority beats writer preference), and a realtime writer blocks new realtime
//       iterations.
//   R5. No barging: while anybody is queued, a new writer or iteration MUST take the queue path (R4), so a
//       fast-path acquirer cannot overtake a queued one. Readers are exempt (R1).
//   R6. A timed acquisition (try_*_until / try_*_for) that fails MUST leave no trace: its queue entry is
//       gone and whoever it held back is reconsidered, as if it had never asked.
//   R7. Upgrade succeeds only for the holder of the only iteration of the shard. It blocks new readers at
//       once and waits for the readers inside to leave. Otherwise it throws iterlock::lock_error and changes
//       nothing: with another iteration live it would wait for that walk to end, which deadlocks if that walk
//       waits for this one (two walkers upgrading, or a walk that is driven by this thread).
//   R8. Acquire/release: every acquisition synchronizes with the release of the previous holder whose
//       writes it may see (a reader sees every write of writers that released before it acquired).
//   R9. Sequence reads: read_validate(read_begin()) is true only if no writer (nor upgraded iteration)
//       acquired the lock between the two calls. The sequence counter has 30 bits: a reader stalled across
//       exactly 2^30 writes could validate wrongly. Callers must not loop unboundedly on failed validations
//       (fall back to lock_shared() after a few).
//
// FAQ
//   Is it recursive? No role is. A thread that holds an iteration and asks for a second iteration of the same
//   shard deadlocks if a writer is queued between the two (R3). Take the lock once per walk.
//   Can a walk be preempted by a realtime writer? No. Priorities order the waiters; they never revoke a hold.
//   Why can readers starve a writer (R2)? Blocking readers behind a waiting writer would make every find
//   pay for writer preference. Finds are short, so in practice readers drain; upgrade (R7) does block new
//   readers, because its caller already excludes every other writer and iteration.
//   What do the sequence reads need from the caller? The data read between read_begin() and read_validate()
//   can be torn by a concurrent writer; copy it with relaxed atomic loads (std::atomic_ref) into locals and
//   use the copy only after read_validate() returns true. Plain memcpy works on common hardware but is a
//   data race in the C++ model (ThreadSanitizer reports it).
//   How is waiting measured? Every acquiring call takes an optional `std::chrono::nanoseconds* waited`. When
//   it is null (the default) nothing is measured and the fast paths are unchanged; otherwise it receives the
//   time the call spent between entering its slow path and holding the lock (zero on the fast path). The
//   caller knows the role and priority, which is all a lock_wait_seconds{role, priority} histogram needs.
//
// Implementation. One 64-bit atomic word carries the fast paths (bits from least significant):
//
//    63                                 34   33   32   31             16   15              0
//   +-------------------------------------+----+----+------------------+------------------+
//   |          seq (30 bits)              | Q  | W  | iterations (16)  |   readers (16)   |
//   +-------------------------------------+----+----+------------------+------------------+
//     readers     readers holding, plus readers that added themselves, saw W and are about to leave again
//     iterations  iterations holding (including an upgraded one)
//     W           a writer holds, or the only iteration is upgraded (then iterations == 1);
//                 so W implies iterations <= 1
//     Q           somebody is queued in the slow path; set and cleared only under mu_, always equal to
//                 "some waiter count below is non-zero" when mu_ is held
//     seq         +1 each time W is set (writer acquisition or upgrade); the sequence-read token
//
//   reader    fetch_add(readers + 1); if W was set, undo and take the slow path.        1 RMW each way
//   writer    CAS(all but seq == 0  ->  W, seq + 1); release: fetch_sub(W).            1 load + 1 CAS, 1 RMW
//   iteration CAS(W == 0 and Q == 0  ->  iterations + 1); release: fetch_sub(1 << 16). 1 load + 1 CAS, 1 RMW
// A release whose RMW returns Q set (and, for readers and iterations, was the last of its kind) takes mu_ and
// wakes whoever may now be granted.
//
// Slow path: a short bounded spin (about a microsecond), then a queue kept under a per-shard std::mutex with
// one condition variable per waiter class (4 priority classes, readers, upgrade drain). Why a mutex and
// condition variables rather than C++20 atomic wait/notify on the word: the hand-off order (R4) and the
// timeouts (R6) are decisions over several counters that must be consistent with each other and with the
// word; under one mutex a grant, a timeout's withdrawal and a release's wake-up are totally ordered, so "no
// lost wake-up" has a short proof (below) and ThreadSanitizer models every step. glibc's mutex and condition
// variable park on futexes, so a parked waiter costs nothing, and none of this is touched while the lock is
// uncontended.
//
// No lost wake-up. A waiter sets Q with an RMW under mu_ and only then tests the word (all under mu_ until it
// parks, which releases mu_ atomically). A releaser's RMW either precedes that RMW in the word's modification
// order (the waiter then sees the release) or follows it (the releaser then sees Q, takes mu_ -- necessarily
// after the waiter parked or left -- and wakes it). Whatever makes a waiter ungrantable other than a holder
// (a higher class queued) is removed only under mu_ by a thread that then re-runs the wake-up decision.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <type_traits>

#include "iterlock/detail/util/atomic_traits.hpp"
#include "iterlock/detail/util/fence.hpp"
#include "iterlock/detail/util/inline.hpp"
#include "iterlock/detail/util/spin.hpp"
#include "iterlock/errors.hpp"
#include "iterlock/priority.hpp"

// Misuse checks that cost a branch on a value already loaded (unlock without lock and the like): on in debug
// and checked builds, off in release builds.
#if defined(ITERLOCK_CHECKED) || !defined(NDEBUG)
#define ITERLOCK_DETAIL_LOCK_CHECK(cond, msg)           \
    do {                                                \
        if (!(cond)) [[unlikely]]                       \
            ::iterlock::detail::shard_lock_misuse(msg); \
    } while (false)
#else
#define ITERLOCK_DETAIL_LOCK_CHECK(cond, msg) \
    do {                                      \
    } while (false)
#endif

namespace iterlock::detail {

// Reports a broken lock protocol (a bug in the caller) and stops the program: continuing would corrupt the
// lock word. Never returns.
[[noreturn]] inline void shard_lock_misuse(const char* what) noexcept {
    std::fprintf(stderr, "iterlock: shard_lock misuse: %s\n", what);
    std::abort();
}

// A consistent picture of one shard_lock, taken under its internal mutex (see shard_lock::state()). Counts of
// holders are exact at the instant the word was read; waiter counts are exact while the mutex was held.
struct shard_lock_state {
    std::uint32_t readers = 0;                 // readers holding (plus any in transit, see the bit diagram)
    std::uint32_t iterations = 0;              // iterations holding
    bool write_held = false;                   // a writer holds, or the only iteration is upgraded
    bool queued = false;                       // the Q bit
    std::uint32_t seq = 0;                     // writer acquisitions so far, modulo 2^30
    std::uint32_t waiting_writers[2] = {};     // queued writers, by priority (index: priority value)
    std::uint32_t waiting_iterations[2] = {};  // queued iterations, by priority
    std::uint32_t waiting_readers = 0;         // readers (and sequence reads) waiting for W to clear
    bool upgrade_draining = false;             // an upgrade waits for readers to leave

    std::uint32_t total_waiting() const noexcept {
        return waiting_writers[0] + waiting_writers[1] + waiting_iterations[0] + waiting_iterations[1] +
               waiting_readers + (upgrade_draining ? 1U : 0U);
    }
};

// The per-shard lock; see the essay above for the rules (R1..R9) and the design. Not copyable, not movable.
// The fast-path word sits alone on the first cache line; the slow-path queue follows on its own lines.
class alignas(64) shard_lock {
  public:
    using nanoseconds = std::chrono::nanoseconds;

    shard_lock() = default;
    shard_lock(const shard_lock&) = delete;
    shard_lock& operator=(const shard_lock&) = delete;
    shard_lock(shard_lock&&) = delete;
    shard_lock& operator=(shard_lock&&) = delete;

    // Requires: nobody holds or waits for the lock (checked in debug and checked builds).
    ~shard_lock() {
        // Relaxed: a misuse check in the destructor; whoever destroys the lock is ordered after its last user
        // by other means.
        ITERLOCK_DETAIL_LOCK_CHECK((state_.load(std::memory_order_relaxed) & ~seq_mask) == 0,
                                   "destroyed while held or waited for");
    }

    // ---- reader ---------------------------------------------------------------------------------

    // Acquires the lock as a reader. Blocks only while a writer or an upgraded iteration holds (R1).
    // Uncontended: one atomic RMW. Never throws. Requires: the caller does not hold the lock as a writer.
    void lock_shared(nanoseconds* waited = nullptr) noexcept {
        // Acquire: pairs with the release RMW of the last writer's unlock() (or downgrade), so the reader
        // sees its writes (R8).
        const std::uint64_t old = state_.fetch_add(reader_one, std::memory_order_acquire);
        ITERLOCK_DETAIL_LOCK_CHECK((old & reader_mask) != reader_mask, "more than 65535 readers at once");
        if ((old & write_bit) != 0) [[unlikely]] {
            lock_shared_slow(waited);
            return;
        }
        if (waited != nullptr) *waited = nanoseconds::zero();
    }

    // Acquires as a reader if no writer holds; never blocks. May fail spuriously only when a writer comes and
    // goes meanwhile (it then returns false). Never throws.
    bool try_lock_shared() noexcept {
        // Relaxed: only a first guess for the CAS below, which re-reads the word and carries the acquire.
        std::uint64_t s = state_.load(std::memory_order_relaxed);
        while ((s & write_bit) == 0) {
            // Acquire on success: pairs with the writer's release in unlock(); relaxed on failure (only a
            // retry).
            if (state_.compare_exchange_weak(s, s + reader_one, std::memory_order_acquire,
                                             std::memory_order_relaxed))
                return true;
        }
        return false;
    }

    // Releases a reader hold. One atomic RMW; takes the internal mutex only when it was the last reader and
    // somebody is queued. Never blocks on another holder, never throws.
    void unlock_shared() noexcept {
        // Release: the reader's reads happen before the acquire CAS of the next writer (try_lock, try_grab),
        // so no writer overwrites data a reader still reads.
        const std::uint64_t old = state_.fetch_sub(reader_one, std::memory_order_release);
        ITERLOCK_DETAIL_LOCK_CHECK((old & reader_mask) != 0, "unlock_shared() without lock_shared()");
        if ((old & queued_bit) != 0 && (old & reader_mask) == reader_one) [[unlikely]]
            wake_waiters();
    }

    // Sequence read, step 1: waits while a writer holds (as lock_shared() does, R1); returns a token.
    std::uint64_t read_begin() noexcept {
        std::uint64_t token;
        if (try_read_begin(token)) [[likely]]
            return token;
        return wait_for_no_writer();
    }

    // read_begin() without waiting: false if a writer (or an upgraded iteration) holds; then the caller
    // waits with read_begin() or takes the lock. One load; never blocks.
    // The token is the word as loaded (its W bit clear when this returns true).
    bool try_read_begin(std::uint64_t& token) const noexcept {
        // Acquire: pairs with the release fetch_sub of the writer's unlock(): the data the last writer wrote
        // before the token's seq is visible to the reads that follow (checked:
        // memory_model.R9_SeqlockReaderNeverValidatesATornPair).
        token = state_.load(std::memory_order_acquire);
        return (token & write_bit) == 0;
    }

    // Sequence read, step 2: true if no writer acquired the lock since the read_begin() that returned `token`
    // (R9), so the data copied in between is consistent: the word's sequence is the token's and W is clear
    // (the token's W is clear, so one xor compares both; reader and iteration counts are ignored). One
    // load and a fence (free on x86). Never blocks.
    bool read_validate(std::uint64_t token) const noexcept {
        // Acquire fence: pairs with after_write_acquired()'s release fence; if a relaxed read of the data saw
        // a store of a writer, the load below sees that writer's W/seq (checked by R9's memory-model test).
        fence(std::memory_order_acquire);
        // Relaxed: the fence above orders it after the data reads.
        return ((state_.load(std::memory_order_relaxed) ^ token) & (seq_mask | write_bit)) == 0;
    }

    // ---- writer ---------------------------------------------------------------------------------

    // Acquires the lock exclusively with the caller's current_priority(). Blocks while anybody holds (R2)
    // and, when others are queued, until its turn (R4, R5). Uncontended: one load and one CAS. Never throws.
    // Requires: the caller holds no role of this lock (an iteration holder upgrades instead).
    void lock(nanoseconds* waited = nullptr) noexcept {
        if (try_lock()) [[likely]] {
            if (waited != nullptr) *waited = nanoseconds::zero();
            return;
        }
        acquire_slow(class_of(false, current_priority()), no_deadline{}, waited);
    }

    // Acquires exclusively if nobody holds or is queued; never blocks, never throws.
    bool try_lock() noexcept {
        // Relaxed: a first guess for the CAS below, which carries the acquire.
        std::uint64_t s = state_.load(std::memory_order_relaxed);
        while ((s & ~seq_mask) == 0) {
            // Acquire: pairs with the release RMWs of the previous holders (unlock, unlock_shared,
            // unlock_iteration), so the writer sees their writes and no read of theirs sees its writes (R8).
            // Relaxed on failure.
            if (state_.compare_exchange_weak(s, s + write_bit + seq_one, std::memory_order_acquire,
                                             std::memory_order_relaxed)) {
                after_write_acquired();
                return true;
            }
        }
        return false;
    }

    // Like lock(), but gives up at `deadline` and then returns false leaving no trace (R6). Never throws.
    template <class Clock, class Duration>
    bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline,
                        nanoseconds* waited = nullptr) noexcept {
        if (try_lock()) {
            if (waited != nullptr) *waited = nanoseconds::zero();
            return true;
        }
        return acquire_slow(class_of(false, current_priority()), deadline, waited);
    }

    template <class Rep, class Period>
    bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout,
                      nanoseconds* waited = nullptr) noexcept {
        return try_lock_until(std::chrono::steady_clock::now() + timeout, waited);
    }

    // Releases the write lock. One atomic RMW; takes the internal mutex only if somebody is queued. Never
    // throws. Requires: the caller holds it through lock() (an upgraded iteration downgrades instead).
    void unlock() noexcept {
        // Release: pairs with the acquire of the next holder (lock_shared, try_grab, try_read_begin's token
        // load).
        const std::uint64_t old = state_.fetch_sub(write_bit, std::memory_order_release);
        ITERLOCK_DETAIL_LOCK_CHECK((old & write_bit) != 0 && (old & iter_mask) == 0,
                                   "unlock() without lock() (an upgraded iteration calls "
                                   "downgrade_write_to_iteration())");
        if ((old & queued_bit) != 0) [[unlikely]]
            wake_waiters();
    }

    // ---- iteration ------------------------------------------------------------------------------

    // Acquires an iteration hold with priority `p`. Blocks while a writer holds, and while a writer or a
    // higher class is queued ahead of `p` (R3, R4). Uncontended: one load and one CAS. Never throws.
    void lock_iteration(priority p = current_priority(), nanoseconds* waited = nullptr) noexcept {
        if (try_lock_iteration()) [[likely]] {
            if (waited != nullptr) *waited = nanoseconds::zero();
            return;
        }
        acquire_slow(class_of(true, p), no_deadline{}, waited);
    }

    // Acquires an iteration hold if no writer holds and nobody is queued; never blocks, never throws.
    bool try_lock_iteration() noexcept {
        // Relaxed: a first guess for the CAS below, which carries the acquire.
        std::uint64_t s = state_.load(std::memory_order_relaxed);
        while ((s & (write_bit | queued_bit)) == 0) {
            ITERLOCK_DETAIL_LOCK_CHECK((s & iter_mask) != iter_mask, "more than 65535 iterations at once");
            // Acquire: pairs with the release in the last writer's unlock() (R8). Relaxed on failure.
            if (state_.compare_exchange_weak(s, s + iter_one, std::memory_order_acquire,
                                             std::memory_order_relaxed))
                return true;
        }
        return false;
    }

    // Like lock_iteration(), but gives up at `deadline` and then returns false leaving no trace (R6): its
    // queue entry is withdrawn and anybody it held back is reconsidered. Never throws.
    template <class Clock, class Duration>
    bool try_lock_iteration_until(const std::chrono::time_point<Clock, Duration>& deadline,
                                  priority p = current_priority(), nanoseconds* waited = nullptr) noexcept {
        if (try_lock_iteration()) {
            if (waited != nullptr) *waited = nanoseconds::zero();
            return true;
        }
        return acquire_slow(class_of(true, p), deadline, waited);
    }

    template <class Rep, class Period>
    bool try_lock_iteration_for(const std::chrono::duration<Rep, Period>& timeout,
                                priority p = current_priority(), nanoseconds* waited = nullptr) noexcept {
        return try_lock_iteration_until(std::chrono::steady_clock::now() + timeout, p, waited);
    }

    // Releases an iteration hold. One atomic RMW; takes the internal mutex only when it was the last
    // iteration and somebody is queued. Never throws. Requires: the caller holds an iteration that is not
    // upgraded.
    void unlock_iteration() noexcept {
        // Release: pairs with the acquire CAS of the next writer (the walk's reads come before its writes).
        const std::uint64_t old = state_.fetch_sub(iter_one, std::memory_order_release);
        ITERLOCK_DETAIL_LOCK_CHECK((old & iter_mask) != 0, "unlock_iteration() without lock_iteration()");
        ITERLOCK_DETAIL_LOCK_CHECK(
            (old & write_bit) == 0,
            "unlock_iteration() while upgraded (call downgrade_write_to_iteration() first)");
        if ((old & queued_bit) != 0 && (old & iter_mask) == iter_one) [[unlikely]]
            wake_waiters();
    }

    // ---- upgrade --------------------------------------------------------------------------------

    // Turns the caller's iteration hold into a write hold (R7): sets W at once (new readers, writers and
    // iterations wait from now on), then waits for the readers inside to leave. On return the caller may
    // write; its iteration hold remains (iterations == 1). Blocks only for the readers already inside.
    // Throws lock_error, changing nothing, if another iteration is live, if the shard is already upgraded, or
    // if no iteration is held at all. Requires: the caller holds an iteration of this shard.
    void upgrade_iteration_to_write(nanoseconds* waited = nullptr) {
        // Relaxed: a first guess for the CAS below, which carries the acquire.
        std::uint64_t s = state_.load(std::memory_order_relaxed);
        for (;;) {
            const std::uint64_t iterations = (s & iter_mask) >> iter_shift;
            if (iterations == 0)
                throw lock_error(
                    "iterlock: upgrade_iteration_to_write() called without an iteration lock on this shard "
                    "(call lock_iteration() first)");
            if ((s & write_bit) != 0)
                throw lock_error(
                    "iterlock: upgrade_iteration_to_write() on a shard that is already upgraded (writes "
                    "during a walk need one upgrade; call downgrade_write_to_iteration() before upgrading "
                    "again)");
            if (iterations > 1)
                throw lock_error(
                    "iterlock: upgrade_iteration_to_write() refused: another iteration of this shard is "
                    "live, and waiting for it to end would deadlock if it waits for this one; write after "
                    "the walk, or make this the only walk of the map");
            // Acquire: as in try_lock(); pairs with the releases of readers that left before W was set.
            // Relaxed on failure.
            if (state_.compare_exchange_weak(s, s + write_bit + seq_one, std::memory_order_acquire,
                                             std::memory_order_relaxed))
                break;
        }
        after_write_acquired();
        // Acquire: pairs with the release fetch_sub of the readers leaving (unlock_shared), so their reads
        // happen before the upgraded walk writes.
        if ((state_.load(std::memory_order_acquire) & reader_mask) == 0) {
            if (waited != nullptr) *waited = nanoseconds::zero();
            return;
        }
        drain_readers(waited);
    }

    // Turns an upgraded iteration back into a plain iteration hold: clears W, so readers and other
    // iterations may enter again. One atomic RMW, plus waking queued waiters if any. Throws lock_error,
    // changing nothing, if the caller's shard is not upgraded.
    void downgrade_write_to_iteration() {
        // Relaxed: a misuse check on the caller's own hold; nothing is read through it.
        const std::uint64_t s = state_.load(std::memory_order_relaxed);
        if ((s & write_bit) == 0 || (s & iter_mask) != iter_one)
            throw lock_error(
                "iterlock: downgrade_write_to_iteration() on a shard that is not upgraded (call "
                "upgrade_iteration_to_write() first; a plain writer calls unlock())");
        // Release: pairs with the acquire of the readers, iterations and sequence reads that follow (as
        // unlock()).
        const std::uint64_t old = state_.fetch_sub(write_bit, std::memory_order_release);
        if ((old & queued_bit) != 0) wake_waiters();
    }

    // ---- observation ----------------------------------------------------------------------------

    // A consistent picture of holders and waiters, for tests, metrics and debugging. Takes the internal mutex
    // (so it blocks briefly behind slow-path work); O(1); never throws.
    shard_lock_state state() const noexcept {
        std::lock_guard<sync_mutex> lk(mu_);
        // Acquire: a snapshot for tests and metrics; pairs with the release RMWs of the holders it counts.
        const std::uint64_t s = state_.load(std::memory_order_acquire);
        shard_lock_state out;
        out.readers = static_cast<std::uint32_t>(s & reader_mask);
        out.iterations = static_cast<std::uint32_t>((s & iter_mask) >> iter_shift);
        out.write_held = (s & write_bit) != 0;
        out.queued = (s & queued_bit) != 0;
        out.seq = static_cast<std::uint32_t>(s >> seq_shift);
        out.waiting_writers[0] = waiting_[cls_be_writer];
        out.waiting_writers[1] = waiting_[cls_rt_writer];
        out.waiting_iterations[0] = waiting_[cls_be_iteration];
        out.waiting_iterations[1] = waiting_[cls_rt_iteration];
        out.waiting_readers = readers_waiting_;
        out.upgrade_draining = drain_waiting_;
        return out;
    }

    // Checks the invariants stated in the bit diagram (Q equals "somebody queued"; W implies at most one
    // iteration; an upgrade drains only while W is set) and aborts with a message if one fails. Takes the
    // internal mutex; meant for debug builds and randomized tests.
    void check_invariants() const noexcept {
        const shard_lock_state st = state();
        if (st.queued != (st.total_waiting() != 0))
            shard_lock_misuse("Q bit disagrees with the waiter counts");
        if (st.write_held && st.iterations > 1) shard_lock_misuse("W set while several iterations hold");
        if (st.upgrade_draining && !(st.write_held && st.iterations == 1))
            shard_lock_misuse("an upgrade drains readers without holding the upgraded iteration");
    }

  private:
    // ---- the word (see the bit diagram) ----
    static constexpr std::uint64_t reader_one = 1;
    static constexpr std::uint64_t reader_mask = 0xFFFFULL;
    static constexpr int iter_shift = 16;
    static constexpr std::uint64_t iter_one = 1ULL << iter_shift;
    static constexpr std::uint64_t iter_mask = 0xFFFFULL << iter_shift;
    static constexpr std::uint64_t write_bit = 1ULL << 32;
    static constexpr std::uint64_t queued_bit = 1ULL << 33;
    static constexpr int seq_shift = 34;
    static constexpr std::uint64_t seq_one = 1ULL << seq_shift;
    static constexpr std::uint64_t seq_mask = ~(seq_one - 1);

    // Spin budget before queueing: spin_rounds re-checks, spin_pauses pauses apart (about a microsecond).
    // Writers hold for well under a microsecond, so most waits for a writer end within it; waits for a walk
    // do not, and queue after a short, bounded loss.
    static constexpr int spin_rounds = 32;
    static constexpr int spin_pauses = 4;

    // ---- waiter classes, in hand-off order (R4) ----
    enum waiter_class : int {
        cls_rt_writer = 0,
        cls_rt_iteration = 1,
        cls_be_writer = 2,
        cls_be_iteration = 3
    };
    static constexpr int class_count = 4;

    static constexpr waiter_class class_of(bool iteration, priority p) noexcept {
        const int base = p == priority::realtime ? cls_rt_writer : cls_be_writer;
        return static_cast<waiter_class>(base + (iteration ? 1 : 0));
    }
    static constexpr bool is_iteration(int cls) noexcept { return (cls & 1) != 0; }

    // May a holder of class `cls` be added to word `s`? (Ignores Q and the queue.)
    static constexpr bool compatible(int cls, std::uint64_t s) noexcept {
        return is_iteration(cls) ? (s & write_bit) == 0 : (s & ~(seq_mask | queued_bit)) == 0;
    }

    struct no_deadline {};

    // Writers and upgrades publish W before writing the data: together with read_validate()'s acquire fence
    // this makes a sequence reader that saw any of the new data also see W or the new seq.
    // Release fence: pairs with read_validate()'s acquire fence (see R9 and its memory-model test).
    static void after_write_acquired() noexcept { fence(std::memory_order_release); }

    // ---- slow paths (out of line: the fast paths above stay small enough to inline) ----

    // First waiting class in hand-off order, or -1. Requires: mu_ held.
    int head_class() const noexcept {
        for (int c = 0; c < class_count; ++c)
            if (waiting_[c] != 0) return c;
        return -1;
    }

    bool anybody_waiting() const noexcept {
        return head_class() >= 0 || readers_waiting_ != 0 || drain_waiting_;
    }

    // Registers the caller as queued: sets Q and returns the word with Q. Requires: mu_ held, count bumped.
    std::uint64_t publish_queued() noexcept {
        // Relaxed: Q is set under mu_; the no-lost-wake-up argument (essay) needs only the RMW's place in the
        // word's modification order, not ordering of other data (the queue lives under mu_).
        return state_.fetch_or(queued_bit, std::memory_order_relaxed) | queued_bit;
    }

    // After a queue entry went away: clears Q when the queue is empty, otherwise wakes whoever may now go
    // (the leaver may have been the one holding them back). Requires: mu_ held.
    void after_leaving_queue() noexcept {
        if (!anybody_waiting())
            // Relaxed: as publish_queued(); under mu_, and the RMW's place in modification order is all the
            // protocol uses.
            state_.fetch_and(~queued_bit, std::memory_order_relaxed);
        else
            // Relaxed: a hint for whom to wake, under mu_; a woken waiter re-reads the word and acquires with
            // its own CAS.
            dispatch(state_.load(std::memory_order_relaxed));
    }

    // The wake-up decision: given word `s`, wakes every waiter that may now be granted. Requires: mu_ held.
    void dispatch(std::uint64_t s) noexcept {
        if (readers_waiting_ != 0 && (s & write_bit) == 0) cv_readers_.notify_all();
        if (drain_waiting_ && (s & reader_mask) == 0) cv_drain_.notify_one();
        const int head = head_class();
        if (head < 0 || !compatible(head, s)) return;
        if (is_iteration(head))
            cv_[head].notify_all();
        else
            cv_[head].notify_one();
    }

    // Called by a release that saw Q: re-runs the wake-up decision under mu_.
    ITERLOCK_DETAIL_NOINLINE void wake_waiters() noexcept {
        std::lock_guard<sync_mutex> lk(mu_);
        // Relaxed: as above; the releaser's RMW that saw Q precedes this load in its own thread.
        dispatch(state_.load(std::memory_order_relaxed));
    }

    // Adds a holder of class `cls` to the word if compatible. `s` is the caller's latest view of the word
    // and is refreshed on failure. Does not look at Q (the queue decides who goes).
    bool try_grab(int cls, std::uint64_t& s) noexcept {
        const std::uint64_t add = is_iteration(cls) ? iter_one : write_bit + seq_one;
        while (compatible(cls, s)) {
            // Acquire: pairs with the release RMWs of the previous holders (R8). Relaxed on failure (the loop
            // retries).
            if (state_.compare_exchange_weak(s, s + add, std::memory_order_acquire,
                                             std::memory_order_relaxed)) {
                if (!is_iteration(cls)) after_write_acquired();
                return true;
            }
        }
        return false;
    }

    template <class Deadline>
    ITERLOCK_DETAIL_NOINLINE bool acquire_slow(waiter_class cls, const Deadline& deadline,
                                               nanoseconds* waited) {
        if (waited == nullptr) return acquire_queued(cls, deadline);
        const auto start = std::chrono::steady_clock::now();
        const bool granted = acquire_queued(cls, deadline);
        *waited = std::chrono::duration_cast<nanoseconds>(std::chrono::steady_clock::now() - start);
        return granted;
    }

    template <class Deadline>
    bool acquire_queued(waiter_class cls, const Deadline& deadline) {
        // Spin only while nobody is queued: with a queue, R5 says take a place in it.
        for (int round = 0; round < spin_rounds; ++round) {
            for (int i = 0; i < spin_pauses; ++i) spin_pause();
            // Relaxed: a spin probe; try_grab's CAS carries the acquire.
            std::uint64_t s = state_.load(std::memory_order_relaxed);
            if ((s & queued_bit) != 0) break;
            if (try_grab(cls, s)) return true;
        }

        std::unique_lock<sync_mutex> lk(mu_);
        ++waiting_[cls];
        std::uint64_t s = publish_queued();
        for (;;) {
            if (head_class() == cls && try_grab(cls, s)) {
                --waiting_[cls];
                after_leaving_queue();
                return true;
            }
            if constexpr (std::is_same_v<Deadline, no_deadline>) {
                cv_[cls].wait(lk);
            } else if (cv_[cls].wait_until(lk, deadline) == std::cv_status::timeout) {
                // Last look: the grant may have come with the deadline. Then withdraw (R6).
                // Relaxed: a last look before try_grab's acquire CAS.
                s = state_.load(std::memory_order_relaxed);
                const bool granted = head_class() == cls && try_grab(cls, s);
                --waiting_[cls];
                after_leaving_queue();
                return granted;
            }
            // Relaxed: a refresh for try_grab's acquire CAS.
            s = state_.load(std::memory_order_relaxed);
        }
    }

    ITERLOCK_DETAIL_NOINLINE void lock_shared_slow(nanoseconds* waited) noexcept {
        const auto start =
            waited != nullptr ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
        // Undo the fast path's increment (it may have been the one an upgrade is draining).
        // Relaxed: undoes the fast path's increment; this reader read nothing under it, so it releases
        // nothing.
        const std::uint64_t old = state_.fetch_sub(reader_one, std::memory_order_relaxed);
        if ((old & queued_bit) != 0 && (old & reader_mask) == reader_one) wake_waiters();

        bool granted = false;
        for (int round = 0; round < spin_rounds && !granted; ++round) {
            for (int i = 0; i < spin_pauses; ++i) spin_pause();
            granted = try_lock_shared();
        }
        if (!granted) {
            std::unique_lock<sync_mutex> lk(mu_);
            ++readers_waiting_;
            std::uint64_t s = publish_queued();
            for (;;) {
                if ((s & write_bit) == 0 &&
                    // Acquire: pairs with the writer's release in unlock() (R8). Relaxed on failure.
                    state_.compare_exchange_weak(s, s + reader_one, std::memory_order_acquire,
                                                 std::memory_order_relaxed))
                    break;
                if ((s & write_bit) != 0) {
                    cv_readers_.wait(lk);
                    // Relaxed: a refresh for the acquire CAS above.
                    s = state_.load(std::memory_order_relaxed);
                }
            }
            --readers_waiting_;
            after_leaving_queue();
        }
        if (waited != nullptr)
            *waited = std::chrono::duration_cast<nanoseconds>(std::chrono::steady_clock::now() - start);
    }

    // read_begin()'s slow path: returns a word (loaded with acquire) in which W is clear.
    ITERLOCK_DETAIL_NOINLINE std::uint64_t wait_for_no_writer() noexcept {
        for (int round = 0; round < spin_rounds; ++round) {
            for (int i = 0; i < spin_pauses; ++i) spin_pause();
            // Acquire: this word becomes read_begin()'s token; pairs with the release of the writer's
            // unlock() (as try_read_begin).
            const std::uint64_t s = state_.load(std::memory_order_acquire);
            if ((s & write_bit) == 0) return s;
        }
        std::unique_lock<sync_mutex> lk(mu_);
        ++readers_waiting_;
        publish_queued();
        // Acquire: the token, as above.
        std::uint64_t s = state_.load(std::memory_order_acquire);
        while ((s & write_bit) != 0) {
            cv_readers_.wait(lk);
            // Acquire: the token, as above.
            s = state_.load(std::memory_order_acquire);
        }
        --readers_waiting_;
        after_leaving_queue();
        return s;
    }

    // upgrade's second half: W is set by the caller; waits until the readers inside have left.
    ITERLOCK_DETAIL_NOINLINE void drain_readers(nanoseconds* waited) noexcept {
        const auto start =
            waited != nullptr ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
        bool drained = false;
        for (int round = 0; round < spin_rounds && !drained; ++round) {
            for (int i = 0; i < spin_pauses; ++i) spin_pause();
            // Acquire: pairs with the release fetch_sub of the readers leaving (unlock_shared).
            drained = (state_.load(std::memory_order_acquire) & reader_mask) == 0;
        }
        if (!drained) {
            std::unique_lock<sync_mutex> lk(mu_);
            drain_waiting_ = true;
            publish_queued();
            // Acquire: as above.
            while ((state_.load(std::memory_order_acquire) & reader_mask) != 0) cv_drain_.wait(lk);
            drain_waiting_ = false;
            after_leaving_queue();
        }
        if (waited != nullptr)
            *waited = std::chrono::duration_cast<nanoseconds>(std::chrono::steady_clock::now() - start);
    }

    // The word, on the first cache line (the class is alignas(64), the queue below starts a new line)
    // with the owner words and nothing else.
    atomic<std::uint64_t> state_{0};  // detail::atomic: std::atomic, or Relacy's in the model checks

  public:
    // Words on the lock word's cache line that the lock itself never reads or writes: room for data that
    // every exclusive holder changes anyway (concurrent_map keeps a shard's revision, entry count and
    // counts of uncontended writes here). A writer takes this line to lock, so these cost it no other
    // line; when writers on two cores take turns, that is one transfer fewer per write.
    static constexpr std::size_t owner_word_count = 4;
    std::atomic<std::uint64_t> owner_words[owner_word_count] = {};

  private:
    // The queue. Everything below is read and written only under mu_.
    alignas(64) mutable sync_mutex mu_;
    std::uint32_t waiting_[class_count] = {};  // queued writers / iterations, indexed by waiter_class
    std::uint32_t readers_waiting_ = 0;        // readers and sequence reads waiting for W to clear
    bool drain_waiting_ = false;    // an upgrade waits for readers to leave (at most one: W is held)
    sync_condvar cv_[class_count];  // one per waiter_class
    sync_condvar cv_readers_;
    sync_condvar cv_drain_;
};

// RAII holder of an iteration lock: acquires in the constructor (with `p`), releases in the destructor.
// Neither copyable nor movable. Blocking and exception behaviour are those of lock_iteration().
class iteration_guard {
  public:
    explicit iteration_guard(shard_lock& lock, priority p = current_priority()) noexcept : lock_(lock) {
        lock_.lock_iteration(p);
    }
    ~iteration_guard() { lock_.unlock_iteration(); }

    iteration_guard(const iteration_guard&) = delete;
    iteration_guard& operator=(const iteration_guard&) = delete;
    iteration_guard(iteration_guard&&) = delete;
    iteration_guard& operator=(iteration_guard&&) = delete;

  private:
    shard_lock& lock_;
};

}  // namespace iterlock::detail
