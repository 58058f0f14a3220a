// iterlock/detail/concurrent/test_access.hpp: the one door tests use to look inside iterlock::concurrent_map
// (Go's export_test.go).
//
// Owns: iterlock::detail::concurrent_map_test_access.
// Invariants: every member only reads (each shard's lock state: who holds, who waits; what the snapshot
//       sweeps cost); not for production code: these names may change without notice.
#pragma once

#include <cstddef>
#include <cstdint>

#include "iterlock/concurrent_map.hpp"
#include "iterlock/detail/lock/shard_lock.hpp"
#include "iterlock/detail/util/prefetch.hpp"  // prefetch_for_write and its path name (CMapPlatform tests)

namespace iterlock::detail {

struct concurrent_map_test_access {
    // Chain versions the snapshot sweeps of m have examined so far (detail/concurrent/snapshot_store.hpp):
    // what releasing snapshots cost, counted instead of timed. Read while no snapshot is being released.
    template <class Map>
    static std::size_t sweep_examined(const Map& m) noexcept {
        std::size_t n = 0;
        for (const auto& s : m.shards_) n += s.t.chain_watch().examined_by_sweeps();
        return n;
    }
    // Shard i's lock, as shard_lock::state() sees it (takes that lock's internal mutex; never waits for
    // a holder).
    template <class Map>
    static shard_lock_state lock_state(const Map& m, std::size_t i) noexcept {
        return m.shards_[i].lock.state();
    }
    // Writers queued on any shard (both priorities).
    template <class Map>
    static std::uint32_t waiting_writers(const Map& m) noexcept {
        return queued(m, &shard_lock_state::waiting_writers);
    }
    // Iteration requests (guards being taken) queued on any shard (both priorities).
    template <class Map>
    static std::uint32_t waiting_iterations(const Map& m) noexcept {
        return queued(m, &shard_lock_state::waiting_iterations);
    }
    // Iteration holds on shard i (a live guard holds one on every shard).
    template <class Map>
    static std::uint32_t iterations_held(const Map& m, std::size_t i) noexcept {
        return lock_state(m, i).iterations;
    }

    // Shards whose table has an iterator registered (a guard whose holder wrote there, L6). Read on the
    // thread that holds the guard, or while no guard lives.
    template <class Map>
    static std::size_t tables_with_iterators(const Map& m) noexcept {
        std::size_t n = 0;
        for (const auto& s : m.shards_) n += s.t.iterators_live() ? 1 : 0;
        return n;
    }

  private:
    // The sum over every shard and both priorities of one of shard_lock_state's per-priority queues.
    template <class Map, class Queue>
    static std::uint32_t queued(const Map& m, Queue shard_lock_state::*q) noexcept {
        std::uint32_t n = 0;
        for (std::size_t i = 0; i < m.shard_count(); ++i) {
            const shard_lock_state st = lock_state(m, i);
            n += (st.*q)[0] + (st.*q)[1];
        }
        return n;
    }
};

}  // namespace iterlock::detail
