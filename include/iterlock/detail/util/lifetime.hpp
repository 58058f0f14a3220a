// iterlock/detail/util/lifetime.hpp: lets an observer that may outlive a container (an exporter's scrape
// thread) read the container only while it exists.
//
// Owns: iterlock::detail::lifetime, iterlock::detail::lifetime_anchor.
// Invariants: rules LT1-LT2 below; alive_ only goes true -> false, under the lifetime's mutex; an anchor
//       allocates its lifetime at most once (the first watch()).
//
// The container holds a lifetime_anchor. An observer asks it for a shared `lifetime` (the first ask
// allocates it) and reads the container only through lifetime::read(f), which runs f under the lifetime's
// mutex if the container still exists. The container's destructor calls the anchor's end() first: it takes
// the same mutex and marks the container gone, so it waits for a read in progress, and no read starts
// afterwards. The container's other calls never touch any of this (a map that nobody observes pays one
// pointer and a once_flag, and its destructor one branch).
//
// Rules:
//   LT1  read(f) runs f only while the container exists, and end() returns only after every f that started
//        before it has returned; f runs under the lifetime's mutex, so f must not wait for a thread that
//        may be destroying the container (iterlock's metrics() takes no lock: it cannot).
//   LT2  A lifetime outlives its container as long as an observer holds it; alive() then says false.
#pragma once

#include <memory>
#include <mutex>

#include "iterlock/detail/util/pinned.hpp"

namespace iterlock::detail {

class lifetime {
  public:
    // Runs f() if the container still exists (LT1); returns whether it ran. Blocks while another read or
    // the container's destruction holds the mutex. Exceptions from f propagate.
    template <class F>
    bool read(F&& f) {
        std::lock_guard<std::mutex> lk(mu_);
        if (!alive_) return false;
        f();
        return true;
    }
    // Whether the container still exists (LT2). Takes the mutex briefly.
    bool alive() const {
        std::lock_guard<std::mutex> lk(mu_);
        return alive_;
    }

  private:
    friend class lifetime_anchor;
    void end() noexcept {
        std::lock_guard<std::mutex> lk(mu_);
        alive_ = false;
    }
    mutable std::mutex mu_;
    bool alive_ = true;
};

// The container's side. Not copyable, not movable (it stands for one container's existence).
class lifetime_anchor : pinned {
  public:
    ~lifetime_anchor() { end(); }

    // The shared lifetime (allocated on the first call; std::bad_alloc leaves nothing behind). Any thread,
    // but not concurrently with the container's destructor (a call on a container being destroyed).
    std::shared_ptr<lifetime> watch() const {
        std::call_once(once_, [this] { life_ = std::make_shared<lifetime>(); });
        return life_;
    }
    // Marks the container gone (LT1): waits for a read in progress. Call it first in the container's
    // destructor (while everything a read may touch still exists). Idempotent; never throws.
    void end() noexcept {
        if (life_) life_->end();
    }

  private:
    mutable std::once_flag once_;
    mutable std::shared_ptr<lifetime> life_;
};

}  // namespace iterlock::detail
