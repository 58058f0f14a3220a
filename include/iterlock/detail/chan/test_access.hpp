// iterlock/detail/chan/test_access.hpp: the one header through which tests reach channel internals (Go:
// export_test.go).
//
// Owns: iterlock::detail::chan_test_access.
// Invariants: every member only reads: how many threads are parked on a channel and how many of them sleep,
//       the debug invariant check, the stream budget's type, and the probes (event counters, see
//       ITERLOCK_CHAN_PROBES in chan/park.hpp). Not for production code.
#pragma once

#include <cstddef>
#include <cstdint>

#include "iterlock/chan.hpp"

namespace iterlock::detail {

struct chan_test_access {
    // The polling budget of chan_wait::stream channels (rule C6), to check its rule on its own.
    using spin_budget = chan_spin_budget;

    // Waiters currently linked in the channel's send (send = true) or receive queue (blocked threads and
    // select cases), plus the party parked in the hand-over slot.
    template <class T>
    static std::size_t waiting(const chan<T>& ch, bool send) noexcept {
        return chan_access::state(ch)->waiting(send);
    }
    // Of those, the ones that have stopped polling and sleep on their futex (rule C6).
    template <class T>
    static std::size_t asleep(const chan<T>& ch, bool send) noexcept {
        return chan_access::state(ch)->asleep(send);
    }
    // Every invariant stated in chan/core.hpp and chan/ring.hpp. Requires: no operation in flight.
    template <class T>
    static bool check_invariants(const chan<T>& ch) noexcept {
        return chan_access::state(ch)->check_invariants();
    }

    // Probes; they count only where ITERLOCK_CHAN_PROBES is 1 (the channel tests), and read 0 elsewhere.
    // How often the channel's lock has been taken since it was made (rule C8).
    template <class T>
    static std::uint64_t lock_acquisitions(const chan<T>& ch) noexcept {
        return chan_access::state(ch)->lock_acquisitions();
    }
    // Process-wide: a parked operation's abandon at its deadline lost to a claimer (chan_parker), and the
    // same race decided in the hand-over slot. Tests compare before/after values.
    static std::uint64_t abandon_lost() noexcept { return chan_probes::abandon_lost.count(); }
    static std::uint64_t slot_deadline_lost() noexcept { return chan_probes::slot_deadline_lost.count(); }
    // While it lives, claimers yield between claim and signal, so the claim/abandon race comes more often.
    struct widen_claim_window {
        widen_claim_window() noexcept { chan_probes::widen_claim_window.store(true); }
        ~widen_claim_window() { chan_probes::widen_claim_window.store(false); }
        widen_claim_window(const widen_claim_window&) = delete;
        widen_claim_window& operator=(const widen_claim_window&) = delete;
    };
};

}  // namespace iterlock::detail
