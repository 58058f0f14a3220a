// tests/concurrent/concurrent_snapshot_faults_test.cpp: issue 13's snapshot faults. A write that throws
// (allocation, copy of K, copy of V) while snapshots live leaves the map and every snapshot exact (item 1);
// the last snapshot ending inside a visit callback neither deadlocks nor leaks (item 5); releasing many live
// snapshots costs what each one alone needed, not everything preserved, and writers beside the releases
// never wait for a whole sweep (item 8); a writer never waits for a walk that sits between two batches
// (item 20, rule S3).
//
// Allocation failures are injected by the replaced global operator new of tests/support/counting_new.cpp:
// a thread-local countdown, armed by a test around one write, makes the n-th allocation of that thread throw
// std::bad_alloc (not under TSan, whose runtime owns operator new: that leg runs the copy faults). Every
// write is retried with n = 1, 2, ... until it succeeds, so every allocation and every copy it makes is a
// throwing position once.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "iterlock/concurrent_map.hpp"
#include "iterlock/detail/concurrent/test_access.hpp"
#include "support/concurrent_maps.hpp"
#include "support/counting_new.hpp"
#include "support/polling.hpp"
#include "support/scale.hpp"
#include "support/watchdog.hpp"

namespace {

using iterlock::seed;
using iterlock::test::scaled;

// ---- types whose copies throw on demand -----------------------------------------------------------------
struct copy_fault : std::runtime_error {
    copy_fault() : std::runtime_error("armed copy") {}
};

// An int whose copy construction and copy assignment count down a per-Tag countdown and throw at zero.
// Moves never throw (the maps require it) and are not counted.
template <int Tag>
struct armed {
    int v = 0;
    armed(int x) : v(x) {}  // NOLINT: implicit, so the maps take plain ints
    armed(const armed& o) : v(o.v) { tick(); }
    armed(armed&& o) noexcept : v(o.v) {}
    armed& operator=(const armed& o) {
        tick();
        v = o.v;
        return *this;
    }
    armed& operator=(armed&& o) noexcept {
        v = o.v;
        return *this;
    }
    friend bool operator==(const armed& a, const armed& b) noexcept { return a.v == b.v; }

    static inline thread_local long countdown = 0;
    static void tick() {
        if (countdown > 0 && --countdown == 0) throw copy_fault();
    }
};
using akey = armed<0>;
using aval = armed<1>;
struct akey_hash {
    std::uint64_t operator()(const akey& k) const noexcept { return iterlock::hash<int>{}(k.v); }
};

enum class fault { allocation, key_copy, value_copy };
const char* name_of(fault f) {
    switch (f) {
        case fault::allocation:
            return "allocation";
        case fault::key_copy:
            return "copy of K";
        case fault::value_copy:
            return "copy of V";
    }
    return "?";
}

// Arms one fault kind at its n-th event for the scope's duration; disarms every kind at the end.
struct armed_scope {
    armed_scope(fault f, long n) {
        if (f == fault::allocation) iterlock::test::counting_new::fail_at(n);
        if (f == fault::key_copy) akey::countdown = n;
        if (f == fault::value_copy) aval::countdown = n;
    }
    ~armed_scope() {
        iterlock::test::counting_new::fail_at(0);
        akey::countdown = 0;
        aval::countdown = 0;
    }
    armed_scope(const armed_scope&) = delete;
    armed_scope& operator=(const armed_scope&) = delete;
};

int int_of(int x) {
    return x;
}
template <int Tag>
int int_of(const armed<Tag>& x) {
    return x.v;
}

using model = std::map<int, int>;

// The map's content as a model, read through a fresh snapshot (snapshot policy) or a guard (locked).
template <class Map>
model content(Map& m) {
    model out;
    if constexpr (requires { m.snapshot(); }) {
        auto s = m.snapshot();
        for (const auto& [k, v] : s) EXPECT_TRUE(out.emplace(int_of(k), int_of(v)).second) << "duplicate key";
        EXPECT_EQ(s.size(), out.size());
    } else {
        auto g = m.lock_for_iteration();
        for (auto& [k, v] : g) EXPECT_TRUE(out.emplace(int_of(k), int_of(v)).second) << "duplicate key";
    }
    return out;
}

template <class Snap>
model walk(const Snap& s) {
    model out;
    for (const auto& [k, v] : s) EXPECT_TRUE(out.emplace(int_of(k), int_of(v)).second) << "duplicate key";
    return out;
}

// One write of the history, with the fault `f` armed at its n-th event around the map's call alone (the
// model is updated afterwards, disarmed). Throws what the map throws.
template <class Map>
void apply_write(Map& m, model& mo, int op, int k, int v, fault f = fault::allocation, long n = 0) {
    using K = typename Map::key_type;
    using V = typename Map::mapped_type;
    const K key(k);
    const V val(v);
    bool did = false;
    {
        armed_scope arm(f, n);
        switch (op) {
            case 0:
                m.insert_or_assign(key, val);
                did = true;
                break;  // copies both
            case 1:
                did = m.try_emplace(key, val);
                break;  // copies both
            case 2:
                m.erase(key);
                did = true;
                break;  // copies only when a snapshot needs the chain
            default:
                did = m.visit(key, [&](const K&, V& x) { x = val; });
                break;  // copy-assigns V
        }
    }
    if (!did) return;
    if (op == 2) {
        mo.erase(k);
    } else if (op == 1) {
        mo.emplace(k, v);
    } else {
        mo[k] = v;
    }
}

// Item 1 for one map type, fault kind and number of live snapshots (or, for the locked policy, whether
// this thread holds a guard and writes during its own walk: rule L6).
template <class Map>
void run_item01(fault f, int live, std::uint64_t sd) {
    SCOPED_TRACE(std::string("fault: ") + name_of(f) + ", live: " + std::to_string(live));
    Map m(4, seed{sd});
    model mo;
    std::mt19937_64 rng(sd);
    for (int k = 0; k < 150; ++k) {
        apply_write(m, mo, 0, k, k);
    }
    constexpr bool snapshots = requires {
        m.snapshot();
    };
    using snap_t = std::conditional_t<snapshots, typename Map::snapshot_view, int>;
    std::vector<std::optional<snap_t>> snaps;
    std::vector<model> seen;
    if constexpr (snapshots) {
        for (int i = 0; i < live; ++i) {
            snaps.emplace_back(m.snapshot());
            seen.push_back(mo);
        }
    }
    const bool guard = !snapshots && live > 0;  // then the writes run inside this thread's walk (L6)
    long thrown = 0;
    auto writes_loop = [&] {
        const int writes = static_cast<int>(scaled(150, 60));
        for (int w = 0; w < writes; ++w) {
            const int op = static_cast<int>(rng() % 4);
            const int k = static_cast<int>(rng() % 400);  // some present, most absent: inserts grow the map
            const int v = static_cast<int>(rng() % 100000);
            if constexpr (snapshots) {
                if (live > 0 && w % 25 == 24) {  // rotate: the oldest ends, a new one starts
                    snaps.erase(snaps.begin());
                    seen.erase(seen.begin());
                    snaps.emplace_back(m.snapshot());
                    seen.push_back(mo);
                }
            }
            for (long n = 1;; ++n) {
                const std::uint64_t rev = m.revision();
                bool threw = false;
                try {
                    armed_scope arm(f, n);
                    model next = mo;
                    apply_write(m, next, op, k, v);
                    mo = std::move(next);
                } catch (const std::bad_alloc&) {
                    threw = true;
                } catch (const copy_fault&) {
                    threw = true;
                }
                if (!threw) break;
                ++thrown;
                // The map is as before the write, and so is every snapshot (S1, S2), and no write was
                // counted.
                ASSERT_EQ(m.revision(), rev) << "a write that threw advanced the revision (op " << op << ")";
                ASSERT_EQ(m.size(), mo.size());
                if (!guard) {
                    ASSERT_EQ(content(m), mo) << "op " << op << " key " << k << " threw at position " << n;
                }
                for (std::size_t i = 0; i < snaps.size(); ++i) {
                    if constexpr (snapshots) {
                        ASSERT_EQ(walk(*snaps[i]), seen[i])
                            << "snapshot " << i << " changed under a failed write";
                        ASSERT_EQ(snaps[i]->size(), seen[i].size());
                    }
                }
                ASSERT_LT(n, 10000) << "the write never succeeded";
            }
        }
    };
    if constexpr (!snapshots) {
        if (guard) {
            auto g = m.lock_for_iteration();
            writes_loop();
        } else {
            writes_loop();
        }
    } else {
        writes_loop();
    }
    EXPECT_EQ(content(m), mo);
    for (std::size_t i = 0; i < snaps.size(); ++i) {
        if constexpr (snapshots) EXPECT_EQ(walk(*snaps[i]), seen[i]);
    }
    EXPECT_GT(thrown, 0) << "no write threw: the fault was never reached";
    snaps.clear();
    EXPECT_EQ(m.preserved_bytes(), 0u);
    EXPECT_EQ(m.snapshots_alive(), 0u);
}

using snap_copying = iterlock::test::snap_map<akey, aval, akey_hash>;
using snap_trivial = iterlock::test::snap_map<int, int>;
using locked_copying = iterlock::test::locked_map<akey, aval, akey_hash>;
using locked_trivial = iterlock::test::locked_map<int, int>;

class SnapshotFaults : public iterlock::test::watched {};

// Item 1: every throwing position of a write (an allocation, a copy of K, a copy of V), with 0, 1 and several
// snapshots alive: the exception reaches the caller, the map is unchanged, every snapshot stays exact.
// (Before: the preserving copy ran inside a noexcept path, and the first such throw ended the program.)
TEST_F(SnapshotFaults, Item01_ThrowingWriteBesideSnapshotsLeavesEverythingExact) {
    for (fault f : {fault::allocation, fault::key_copy, fault::value_copy})
        for (int live : {0, 1, 3})
            if (f != fault::allocation || iterlock::test::counting_new::enabled)
                run_item01<snap_copying>(f, live, 101 + static_cast<std::uint64_t>(live));
}
// The same with trivially copyable K and V (optimistic reads and racy batch copies): allocations only.
TEST_F(SnapshotFaults, Item01_ThrowingAllocationBesideSnapshotsOptimisticMap) {
    if (!iterlock::test::counting_new::enabled) GTEST_SKIP() << "no allocation failure injection under TSan";
    for (int live : {0, 1, 3})
        run_item01<snap_trivial>(fault::allocation, live, 7 + static_cast<std::uint64_t>(live));
}
// The locked policy: with no guard, and with this thread holding the only guard and writing during its walk.
TEST_F(SnapshotFaults, Item01_ThrowingWriteLockedPolicy) {
    for (fault f : {fault::allocation, fault::key_copy, fault::value_copy})
        for (int held : {0, 1})
            if (f != fault::allocation || iterlock::test::counting_new::enabled)
                run_item01<locked_copying>(f, held, 33 + static_cast<std::uint64_t>(held));
    if (iterlock::test::counting_new::enabled)
        for (int held : {0, 1}) run_item01<locked_trivial>(fault::allocation, held, 44);
}

// ---- item 5 ---------------------------------------------------------------------------------------------
using lmap = iterlock::test::snap_map<long, long>;
using smap = iterlock::test::snap_map<long, std::string>;

// Fills m and takes a snapshot, then changes every entry so that the snapshot holds preserved copies.
template <class Map, class V>
std::optional<typename Map::snapshot_view> snapshot_with_copies(Map& m, V v0, V v1) {
    for (long k = 0; k < 2000; ++k) m.insert_or_assign(k, v0);
    std::optional<typename Map::snapshot_view> s(m.snapshot());
    for (long k = 0; k < 2000; ++k) m.insert_or_assign(k, v1);
    EXPECT_GT(m.preserved_bytes(), 0u);
    return s;
}

// Item 5: the last snapshot ending inside a callback of the same map (visit, update, cvisit, erase_if)
// neither deadlocks (its sweep would need the shard lock the callback holds) nor keeps its memory: the sweep
// runs once the callback's lock is released.
TEST(SnapshotFaultsItem05, Item05_LastSnapshotEndingInsideACallbackNeitherHangsNorLeaks) {
    iterlock::test::watchdog dog(std::chrono::seconds(60));
    {
        lmap m(8);
        auto s = snapshot_with_copies(m, 1L, 2L);
        EXPECT_TRUE(m.visit(5L, [&](const long&, long& v) {
            s.reset();
            v = 3;
        }));
        EXPECT_EQ(m.snapshots_alive(), 0u);
        EXPECT_EQ(m.preserved_bytes(), 0u) << "the deferred sweep did not run after visit";
        EXPECT_EQ(*m.find(5L), 3);
    }
    {
        lmap m(8);
        auto s = snapshot_with_copies(m, 1L, 2L);
        EXPECT_TRUE(m.update(6L, [&](long& v) {
            s.reset();
            v = 4;
        }));
        EXPECT_EQ(m.preserved_bytes(), 0u);
    }
    {
        smap m(8);
        auto s = snapshot_with_copies(m, std::string("a"), std::string("b"));
        EXPECT_TRUE(m.cvisit(7L, [&](const long&, const std::string&) { s.reset(); }));
        EXPECT_EQ(m.preserved_bytes(), 0u);
    }
    {
        lmap m(8);
        auto s = snapshot_with_copies(m, 1L, 2L);
        std::size_t seen = 0;
        m.erase_if([&](const long&, long&) {
            if (++seen == 10) s.reset();
            return false;
        });
        EXPECT_EQ(m.preserved_bytes(), 0u);
    }
    {  // two maps: A's snapshot ends inside B's callback that runs inside A's callback
        lmap a(8), b(8);
        b.insert_or_assign(1L, 1L);
        auto s = snapshot_with_copies(a, 1L, 2L);
        EXPECT_TRUE(a.visit(
            8L, [&](const long&, long&) { b.cvisit(1L, [&](const long&, const long&) { s.reset(); }); }));
        EXPECT_EQ(a.preserved_bytes(), 0u);
    }
    {  // not the last one: an older snapshot stays exact, the released one's copies are swept after the visit
        lmap m(8);
        for (long k = 0; k < 2000; ++k) m.insert_or_assign(k, 1L);
        auto older = m.snapshot();
        for (long k = 0; k < 2000; ++k) m.insert_or_assign(k, 2L);
        std::optional<lmap::snapshot_view> newer(m.snapshot());
        for (long k = 0; k < 2000; ++k) m.insert_or_assign(k, 3L);
        const std::size_t both = m.preserved_bytes();
        m.visit(1L, [&](const long&, long&) { newer.reset(); });
        EXPECT_LT(m.preserved_bytes(), both) << "the newer snapshot's copies were not swept";
        long n = 0;
        for (const auto& [k, v] : older) {
            EXPECT_EQ(v, 1L);
            ++n;
        }
        EXPECT_EQ(n, 2000);
    }
}

// ---- item 8 ---------------------------------------------------------------------------------------------
// Takes `live` snapshots with `gap` writes (random keys) before each, then releases them in `order`; returns
// the chain versions the sweeps examined per release, and checks each remaining snapshot stays exact.
enum class order { oldest_first, random };
double examined_per_release(int live, int gap, order o, std::uint64_t sd) {
    lmap m(16, seed{sd});
    std::mt19937_64 rng(sd);
    for (long k = 0; k < 20000; ++k) m.insert_or_assign(k, 0L);
    std::vector<std::optional<lmap::snapshot_view>> snaps;
    std::vector<long> tag;  // snapshot i saw every value < tag[i]... each key's value is the write count
    long writes = 0;
    for (int i = 0; i < live; ++i) {
        for (int w = 0; w < gap; ++w) m.insert_or_assign(static_cast<long>(rng() % 20000), ++writes);
        snaps.emplace_back(m.snapshot());
        tag.push_back(writes);
    }
    std::vector<int> idx(static_cast<std::size_t>(live));
    for (int i = 0; i < live; ++i) idx[static_cast<std::size_t>(i)] = i;
    if (o == order::random) std::shuffle(idx.begin(), idx.end(), rng);
    const std::size_t before = iterlock::detail::concurrent_map_test_access::sweep_examined(m);
    for (std::size_t j = 0; j < idx.size(); ++j) {
        snaps[static_cast<std::size_t>(idx[j])].reset();
        if (j % 64 == 0 && j + 1 < idx.size()) {  // a survivor still sees exactly its instant
            const std::size_t probe = static_cast<std::size_t>(idx[j + 1]);
            long n = 0;
            for (const auto& [k, v] : *snaps[probe]) {
                EXPECT_LE(v, tag[probe]);
                ++n;
            }
            EXPECT_EQ(n, 20000);
        }
    }
    EXPECT_EQ(m.preserved_bytes(), 0u);
    const std::size_t examined = iterlock::detail::concurrent_map_test_access::sweep_examined(m) - before;
    return static_cast<double>(examined) / live;
}

// Item 8: releasing one of n live snapshots examines what it alone may have needed (the copies made between
// it and the next live snapshot), not everything preserved. Released oldest first, each release examines
// about the copies of one gap, whatever n; in a random order, a copy is examined by each release that finds
// it at the edge of its range, O(log n) times on average. Before, every release examined every preserved
// copy (about gap * n / 2 per release: 1,000 live snapshots took 20 ms per release). Counted, not timed.
TEST(SnapshotFaultsItem08, Item08_ReleaseCostDoesNotGrowWithLiveSnapshots) {
    const int gap = 100;
    const int many = static_cast<int>(scaled(1000, 400));
    const double fifo_small = examined_per_release(50, gap, order::oldest_first, 5);
    const double fifo_large = examined_per_release(many, gap, order::oldest_first, 5);
    EXPECT_LE(fifo_small, 2.0 * gap);
    EXPECT_LE(fifo_large, 2.0 * gap);
    const double random_small = examined_per_release(50, gap, order::random, 5);
    const double random_large = examined_per_release(many, gap, order::random, 5);
    EXPECT_LE(random_large, 3.0 * random_small) << "grows faster than log(live snapshots)";
    EXPECT_LE(random_large, 10.0 * gap);
    std::printf("examined per release: oldest first %.0f (50 live), %.0f (%d live); random %.0f, %.0f\n",
                fifo_small, fifo_large, many, random_small, random_large);
}

// Item 8: writers beside the releases wait for one sweep step at most, never for a whole sweep: while
// another thread releases 400 snapshots over a map full of copies, a writer keeps completing writes
// (checked as progress during the releases, not as time).
TEST(SnapshotFaultsItem08, Item08_WritersProgressWhileManySnapshotsAreReleased) {
    iterlock::test::watchdog dog(std::chrono::seconds(120));
    lmap m(4, seed{9});
    for (long k = 0; k < 20000; ++k) m.insert_or_assign(k, 0L);
    std::vector<std::optional<lmap::snapshot_view>> snaps;
    std::mt19937_64 rng(9);
    for (int i = 0; i < 400; ++i) {
        for (int w = 0; w < 100; ++w) m.insert_or_assign(static_cast<long>(rng() % 20000), i);
        snaps.emplace_back(m.snapshot());
    }
    std::atomic<bool> done{false};
    std::atomic<long> during{0};
    std::thread writer([&] {
        long k = 0;
        while (!done.load(std::memory_order_acquire)) {
            m.insert_or_assign(k++ % 20000, -1L);
            during.fetch_add(1, std::memory_order_relaxed);
        }
    });
    for (auto& s : snaps) s.reset();
    done.store(true, std::memory_order_release);
    writer.join();
    EXPECT_EQ(m.preserved_bytes(), 0u);
    EXPECT_GT(during.load(), 0);
}

// ---- item 20 (S3) ---------------------------------------------------------------------------------------
// S3: writers never wait for a snapshot. A walk that sits between two batches holds no lock: a writer thread
// completes writes to every shard meanwhile, and the walk, resumed, still yields its instant exactly. Both
// value kinds: strings (batches copied under the shard's lock) and longs (sequence-lock batches).
template <class Map, class MakeV>
void walk_sits_between_batches(MakeV make) {
    iterlock::test::watchdog dog(std::chrono::seconds(120));
    Map m(8, seed{4});
    for (long k = 0; k < 4000; ++k) m.insert_or_assign(k, make(k));
    auto s = m.snapshot();
    auto it = s.begin();
    ASSERT_NE(it, s.end());
    ++it;  // the walk is now inside its first batch, between two lock holds
    std::atomic<long> written{0};
    std::thread writer([&] {
        for (long k = 0; k < 4000; ++k) {
            m.insert_or_assign(k, make(k + 1));
            written.fetch_add(1, std::memory_order_release);
        }
    });
    const bool finished =
        iterlock::test::eventually([&] { return written.load() == 4000; }, std::chrono::seconds(60));
    EXPECT_TRUE(finished) << "a writer waited for a walk that sits between batches (S3): " << written.load()
                          << " of 4000 writes done";
    writer.join();
    long n = 1;
    for (; it != s.end(); ++it) {
        EXPECT_EQ(it->second, make(it->first)) << "the walk saw a write made after its instant";
        ++n;
    }
    EXPECT_EQ(n, 4000);
}
TEST(SnapshotFaultsItem20, Item20_S3_WriterNeverWaitsForAWalkBetweenBatches) {
    walk_sits_between_batches<lmap>([](long k) { return k * 3; });
    walk_sits_between_batches<smap>([](long k) { return std::to_string(k); });
}

}  // namespace
