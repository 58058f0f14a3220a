// tests/support/shard_lock_idle.hpp: the check that a shard_lock is back at rest, for the unit and the stress
// tests of iterlock/detail/lock/shard_lock.hpp.
//
// Owns: iterlock::test::expect_idle.
// Invariant: reads the lock's state once (state()), then runs its own check_invariants(); call it only when
// no thread uses the lock, or the snapshot of its state may be stale.
#pragma once

#include <gtest/gtest.h>

#include "iterlock/detail/lock/shard_lock.hpp"

namespace iterlock::test {

// No reader, no iteration, no writer, no queued or waiting thread; the lock's invariants hold.
inline void expect_idle(const iterlock::detail::shard_lock& l) {
    const auto st = l.state();
    EXPECT_EQ(st.readers, 0U);
    EXPECT_EQ(st.iterations, 0U);
    EXPECT_FALSE(st.write_held);
    EXPECT_FALSE(st.queued);
    EXPECT_EQ(st.total_waiting(), 0U);
    l.check_invariants();
}

}  // namespace iterlock::test
