// tests/support/ordered_writes.hpp: the ordered-write harness shared by the snapshot and guard suites.
// One writer applies k0, k1, k2, ... (inserts, or erases of a prefilled map) while a reader walks the map
// with the policy's iteration; every walk must show exactly a prefix of the writer's sequence (S1/S2, L1).
//
// Invariants the harness keeps: the writer publishes `done` (writes completed) after each write, so a walk
// whose instant lies between reading done = p0 and done = p1 reflects j writes with p0 <= j <= p1 + 1 (the
// write in flight may already have taken effect). Every `handshake` writes the writer waits until a new walk
// has started, so walks overlap the writes on any scheduler; the wait never involves time.
//
// The handshake's effect is checked, not assumed (item 19 of issue 13): the walk that releases the writer
// from its h-th handshake (h = 1 .. n / handshake) began after the writer passed handshake h - 1 and before
// it passed handshake h, so it reflects between (h - 1) * handshake and h * handshake writes. For 2 <= h <= n
// / handshake - 1 that is neither an empty nor a full map: every round must count at least n / handshake - 2
// such partial walks, or the harness no longer makes walks overlap the writer (and every walk would pass
// trivially).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <latch>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "iterlock/map.hpp"

namespace iterlock::test {

// The value every writer of the ordered-write tests stores for key k (so a walk can check it).
constexpr long value_of(long k) {
    return k * 7 + 3;
}

enum class write_kind { insert, erase };

// What a walk returned: the entries it produced, and what the view reported about itself.
struct walk_result {
    std::vector<std::pair<long, long>> entries;
    std::size_t reported_size = 0;
};

// Checks one walk of an ordered-write round: keys [0, n) inserted in order (a prefix [0, j)) or erased in
// order from a full map (a suffix [j, n)), each with value_of(k); j, the number of writes reflected, must lie
// in [lo, hi]. Returns "" or a description of what is wrong.
inline std::string check_ordered_walk(const walk_result& w, write_kind kind, long n, long lo, long hi,
                                      long* writes_seen) {
    std::vector<char> present(static_cast<std::size_t>(n), 0);
    std::ostringstream err;
    for (const auto& [k, v] : w.entries) {
        if (k < 0 || k >= n) {
            err << "key " << k << " was never written; ";
            continue;
        }
        if (present[static_cast<std::size_t>(k)]) err << "key " << k << " produced twice; ";
        present[static_cast<std::size_t>(k)] = 1;
        if (v != value_of(k)) err << "key " << k << " has value " << v << " (never written); ";
    }
    const long count = static_cast<long>(std::count(present.begin(), present.end(), 1));
    const long j = kind == write_kind::insert ? count : n - count;
    long holes = 0;
    for (long k = 0; k < n; ++k) {
        const bool expected = kind == write_kind::insert ? k < j : k >= j;
        if (expected != (present[static_cast<std::size_t>(k)] != 0)) ++holes;
    }
    if (holes != 0) {
        err << (kind == write_kind::insert ? "not a prefix: " : "not a suffix: ") << holes
            << " keys out of place for " << j << " writes; ";
    }
    if (w.reported_size != static_cast<std::size_t>(w.entries.size())) {
        err << "size() says " << w.reported_size << " but the walk produced " << w.entries.size() << "; ";
    }
    if (j < lo || j > hi) err << "reflects " << j << " writes, outside [" << lo << ", " << hi << "]; ";
    *writes_seen = j;
    return err.str();
}

struct ordered_stats {
    long passes = 0;
    long partial = 0;  // passes that saw the writer mid-round (0 < j < n); checked per round (see above)
    long rounds = 0;
};

// The fewest partial walks a round of n writes with this handshake can have (see the essay above).
constexpr long min_partial_walks(long n, long handshake) {
    return n / handshake >= 2 ? n / handshake - 2 : 0;
}

// A make_map for run_ordered_rounds: round r gets a fresh Map(shards, seed{r + seed_offset}).
template <class Map>
auto fresh_map_per_round(std::size_t shards, std::uint64_t seed_offset) {
    return [shards, seed_offset](long round) {
        return std::make_unique<Map>(shards, iterlock::seed{static_cast<std::uint64_t>(round) + seed_offset});
    };
}

// Runs rounds of `n` ordered writes on fresh maps made by make_map(round) until at least `min_passes` walks
// were checked. walk(map) returns a walk_result plus runs any policy-specific checks.
template <class MakeMap, class Walk>
ordered_stats run_ordered_rounds(write_kind kind, long n, long handshake, long min_passes, MakeMap make_map,
                                 Walk walk) {
    ordered_stats st;
    for (long round = 0; st.passes < min_passes; ++round) {
        auto m = make_map(round);
        if (kind == write_kind::erase) {
            for (long k = 0; k < n; ++k) m->insert({k, value_of(k)});
        }
        std::atomic<long> done{0};
        std::atomic<long> walks_started{0};
        std::atomic<bool> writer_finished{false};
        std::latch start(2);
        std::thread writer([&] {
            start.arrive_and_wait();
            for (long k = 0; k < n; ++k) {
                if (kind == write_kind::insert) {
                    EXPECT_TRUE(m->insert({k, value_of(k)}));
                } else {
                    EXPECT_EQ(m->erase(k), 1u);
                }
                done.store(k + 1, std::memory_order_seq_cst);
                if (k % handshake == handshake - 1) {
                    const long seen = walks_started.load();
                    while (walks_started.load() == seen) std::this_thread::yield();
                }
            }
            writer_finished.store(true);
        });
        start.arrive_and_wait();
        bool failed = false;
        long round_partial = 0;
        for (;;) {
            const bool last = writer_finished.load();  // one more walk after the writer ends
            const long p0 = done.load(std::memory_order_seq_cst);
            long p1 = 0;
            const walk_result w = walk(*m, [&] {
                walks_started.fetch_add(1);
                p1 = done.load(std::memory_order_seq_cst);
            });
            long j = 0;
            const std::string err = check_ordered_walk(w, kind, n, p0, p1 + 1, &j);
            ++st.passes;
            if (j > 0 && j < n) {
                ++st.partial;
                ++round_partial;
            }
            if (!err.empty() && !failed) {
                ADD_FAILURE() << "round " << round << ", pass " << st.passes << ": " << err;
                failed = true;  // one report per round is enough
            }
            if (last) break;
        }
        writer.join();
        ++st.rounds;
        if (!failed && round_partial < min_partial_walks(n, handshake)) {
            ADD_FAILURE() << "round " << round << ": only " << round_partial
                          << " walks saw the writer mid-round, fewer than the handshake guarantees ("
                          << min_partial_walks(n, handshake) << "): the walks no longer overlap the writes";
            failed = true;
        }
        if (failed) break;
    }
    return st;
}

}  // namespace iterlock::test
