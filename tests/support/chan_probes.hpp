// tests/support/chan_probes.hpp: the channel suites' view of a channel's insides: the probes of
// detail/chan/test_access.hpp (waiter counts, event counters) and waits on them.
//
// Owns: iterlock::test::chan_access, wait_receivers, wait_senders.
// Invariant: every translation unit of a channel test is built with ITERLOCK_CHAN_PROBES=1 (the probes
// change chan's layout); the static_assert below says so where it is forgotten.
#pragma once

#include <cstddef>

#include "iterlock/chan.hpp"
#include "iterlock/detail/chan/test_access.hpp"
#include "polling.hpp"

static_assert(ITERLOCK_CHAN_PROBES,
              "the channel tests assert on probes: build them with ITERLOCK_CHAN_PROBES=1");

namespace iterlock::test {

using chan_access = iterlock::detail::chan_test_access;

// Wait (under the test's watchdog) until `n` receivers, or senders, are parked on `ch`.
template <class T>
void wait_receivers(const iterlock::chan<T>& ch, std::size_t n) {
    wait_until([&] { return chan_access::waiting(ch, false) >= n; });
}
template <class T>
void wait_senders(const iterlock::chan<T>& ch, std::size_t n) {
    wait_until([&] { return chan_access::waiting(ch, true) >= n; });
}

}  // namespace iterlock::test
