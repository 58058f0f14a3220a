// The one header through which tests reach channel internals (Go: export_test.go): how many threads are
// parked on a channel, and the debug invariant check. Not for production code.
#pragma once

#include <cstddef>

#include "iterlock/chan.hpp"

namespace iterlock::detail {

struct chan_test_access {
    // Waiters currently linked in the channel's receive / send queue (blocked threads and select cases).
    template <class T>
    static std::size_t waiting_receivers(const chan<T>& ch) noexcept {
        return chan_access::state(ch)->waiting(false);
    }
    template <class T>
    static std::size_t waiting_senders(const chan<T>& ch) noexcept {
        return chan_access::state(ch)->waiting(true);
    }
    // Every invariant stated in chan_core.hpp and chan_ring.hpp. Requires: no operation in flight.
    template <class T>
    static bool check_invariants(const chan<T>& ch) noexcept {
        return chan_access::state(ch)->check_invariants();
    }
};

}  // namespace iterlock::detail
