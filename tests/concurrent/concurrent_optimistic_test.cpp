// tests/concurrent/concurrent_optimistic_test.cpp: the optimistic (sequence-lock) finds of concurrent_map
// and the epoch-based reclamation that keeps them memory-safe (detail/reclaim/epoch.hpp).
//
// What is checked: epoch rules E1/E2 on the domain directly; and, with finds racing a writer that makes the
// table grow, evacuate, chain and free overflow buckets and clear, that a find never returns a value that
// was never written for its key (a torn or foreign read that passed validation) and never misses a key that
// is present throughout. Under AddressSanitizer the same runs catch a read of a freed block. Under
// ThreadSanitizer the optimistic path is compiled out (it races by design); the tests then exercise the
// locked path.
#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#if defined(__linux__)
#include <sys/wait.h>
#include <unistd.h>
#endif

#include "iterlock/concurrent_map.hpp"
#include "iterlock/detail/reclaim/epoch.hpp"
#include "support/concurrent_maps.hpp"
#include "support/scale.hpp"
#include "support/watchdog.hpp"

namespace {

using iterlock::detail::epoch_domain;
using iterlock::test::scaled;

TEST(Epoch, E1_ReaderInsideBlocksStampsFromBeforeItLeaves) {
    epoch_domain& d = epoch_domain::global();
    epoch_domain::record& r = d.mine();
    d.enter(r);
    const std::uint64_t stamp = d.retire_stamp();  // retired while the reader is inside
    EXPECT_FALSE(d.safe(stamp));
    epoch_domain::leave(r);
    EXPECT_TRUE(d.safe(stamp));
}

TEST(Epoch, E1_ReaderThatEnteredAfterTheRetireDoesNotBlockIt) {
    epoch_domain& d = epoch_domain::global();
    const std::uint64_t stamp = d.retire_stamp();
    epoch_domain::record& r = d.mine();
    d.enter(r);  // entered after the stamp: cannot reach what was unlinked before it
    EXPECT_TRUE(d.safe(stamp));
    const std::uint64_t later = d.retire_stamp();
    EXPECT_FALSE(d.safe(later));
    epoch_domain::leave(r);
}

TEST(Epoch, E1_AnotherThreadsSectionIsSeen) {
    epoch_domain& d = epoch_domain::global();
    std::atomic<int> phase{0};
    std::thread reader([&] {
        epoch_domain::section s(d);
        phase.store(1);
        while (phase.load() != 2) std::this_thread::yield();
    });
    while (phase.load() != 1) std::this_thread::yield();
    const std::uint64_t stamp = d.retire_stamp();
    EXPECT_FALSE(d.safe(stamp));
    phase.store(2);
    reader.join();
    EXPECT_TRUE(d.safe(stamp));
}

TEST(Epoch, E3_RecordsAreReusedByLaterThreads) {
    epoch_domain& d = epoch_domain::global();
    std::vector<const void*> seen;
    for (int i = 0; i < 8; ++i) {
        std::thread t([&] { seen.push_back(&d.mine()); });
        t.join();
    }
    std::sort(seen.begin(), seen.end());
    // Threads that never overlap share one record (the main thread holds another).
    EXPECT_EQ(std::unique(seen.begin(), seen.end()) - seen.begin(), 1);
}

TEST(Epoch, E2_WaitUntilSafeReturnsOnceTheSectionEnds) {
    epoch_domain& d = epoch_domain::global();
    std::atomic<bool> inside{false};
    std::atomic<bool> go{false};
    std::thread reader([&] {
        epoch_domain::section s(d);
        inside.store(true);
        while (!go.load()) std::this_thread::yield();
    });
    while (!inside.load()) std::this_thread::yield();
    const std::uint64_t stamp = d.retire_stamp();
    go.store(true);
    d.wait_until_safe(stamp);  // would hang (watchdog) if leaving were not seen
    EXPECT_TRUE(d.safe(stamp));
    reader.join();
}

// E4 as a store-buffering litmus test. Per round the reclaimer "unlinks" (stores the round number) and then
// scans; the reader enters a section and then reads the unlink flag, and stays inside until the scan is
// over. A reader that missed the unlink must be visible to the scan; "missed and unseen" is the outcome that
// would let a block be freed under a reader. It is forbidden with the fences of either mode; with the heavy
// fence reduced to a plain fence while the light one is a compiler barrier, it shows up within a few
// thousand rounds on x86 (checked by hand).
TEST(Epoch, E4_AScanSeesTheSectionOrTheSectionSeesTheUnlink) {
    epoch_domain& d = epoch_domain::global();
    const int rounds = static_cast<int>(scaled(40000, 5000));
    std::atomic<int> ready{0}, go{0}, entered{0}, scanned{0};
    std::atomic<int> unlinked{0};
    std::vector<char> reader_saw(static_cast<std::size_t>(rounds));
    std::vector<char> scan_saw(static_cast<std::size_t>(rounds));
    // Both sides leave the start line together, then each spins a pseudo-random number of steps, so that
    // over the rounds the reader's entry and the reclaimer's unlink land at every distance from each other.
    auto spin = [](std::uint64_t steps) {
        for (std::uint64_t k = 0; k < steps; ++k) std::atomic_signal_fence(std::memory_order_seq_cst);
    };
    std::thread reader([&] {
        epoch_domain::record& r = d.mine();
        std::uint64_t x = 0x9E3779B97F4A7C15ULL;
        for (int i = 1; i <= rounds; ++i) {
            ready.store(i, std::memory_order_release);
            while (go.load(std::memory_order_acquire) < i) {
            }
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            spin((x >> 58) * 4);
            d.enter(r);
            reader_saw[static_cast<std::size_t>(i - 1)] = unlinked.load(std::memory_order_relaxed) == i;
            entered.store(i, std::memory_order_release);
            while (scanned.load(std::memory_order_acquire) < i) {
            }
            epoch_domain::leave(r);
        }
    });
    std::uint64_t x = 0xD1B54A32D192ED03ULL;
    for (int i = 1; i <= rounds; ++i) {
        while (ready.load(std::memory_order_acquire) < i) {
        }
        go.store(i, std::memory_order_release);
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        spin((x >> 58) * 4 + 40);  // about the time the go flag takes to reach the reader's core
        unlinked.store(i, std::memory_order_relaxed);
        scan_saw[static_cast<std::size_t>(i - 1)] =
            d.oldest_reader() != std::numeric_limits<std::uint64_t>::max();
        scanned.store(i, std::memory_order_release);
        while (entered.load(std::memory_order_acquire) < i) {
        }
    }
    reader.join();
    int missed_and_unseen = 0;
    int missed = 0;
    for (std::size_t i = 0; i < reader_saw.size(); ++i) {
        missed += !reader_saw[i];
        missed_and_unseen += !reader_saw[i] && !scan_saw[i];
    }
    EXPECT_EQ(missed_and_unseen, 0) << "asymmetric fences: " << d.asymmetric()
                                    << "; reader missed the unlink in " << missed << " of " << rounds
                                    << " rounds";
}

TEST(Epoch, E4_AsymmetricWhereMembarrierIsOffered) {
#if defined(__linux__) && !ITERLOCK_DETAIL_TSAN
    const long cmds = ::syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    const bool offered = cmds >= 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0;
    EXPECT_EQ(epoch_domain::global().asymmetric(), offered);
#else
    EXPECT_FALSE(epoch_domain::global().asymmetric());
#endif
}

// Deciding the fences may register the process for membarrier, which waits for an RCU grace period once
// the process has threads (7 ms measured here, in the middle of an etcd mirror's stream of applies). A map
// decides them when it is built, so no find, write or feed delivery pays it. The check needs a process
// where nothing has decided them yet: ctest runs each test in a process of its own, so it checks here; run
// after other tests of this binary, it re-executes the binary (gtest's threadsafe death-test style, which
// qemu-user cannot do: the aarch64 leg runs each test alone).
bool a_map_decides_the_fences() {
    const bool before = epoch_domain::global().decided();
    std::thread([] {}).join();  // a process with threads, as when the registration is costly
    { const iterlock::concurrent_map<int, int> m; }
    return !before && epoch_domain::global().decided();
}
[[noreturn]] void check_in_a_fresh_process() {
    std::_Exit(a_map_decides_the_fences() ? 0 : 1);
}
TEST(Epoch, E4_BuildingAMapDecidesTheFences) {
    if (!epoch_domain::global().decided()) {
        EXPECT_TRUE(a_map_decides_the_fences());
        return;
    }
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(check_in_a_fresh_process(), ::testing::ExitedWithCode(0), "");
}

// The heavy fence in a forked child of a registered process (the registration is per process): it must
// work, not abort.
TEST(Epoch, E4_HeavyFenceWorksInAForkedChild) {
#if defined(__linux__) && !ITERLOCK_DETAIL_TSAN
    epoch_domain& d = epoch_domain::global();
    (void)d.asymmetric();  // decides the fences (registers, if offered) before the fork
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        const std::uint64_t stamp = d.retire_stamp();
        ::_exit(d.safe(stamp) ? 0 : 3);  // no section is open in the child
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status)) << "the child was killed (signal " << WTERMSIG(status) << ")";
    EXPECT_EQ(WEXITSTATUS(status), 0);
#else
    GTEST_SKIP() << "fork with sanitizer threads, or no membarrier";
#endif
}

// Values carry their key: a find that returns a value of another key (or garbage) is caught.
constexpr std::uint64_t value_of(std::uint64_t key, std::uint64_t version) {
    return (key << 24) | (version & 0xFFFFFF);
}
constexpr bool belongs_to(std::uint64_t value, std::uint64_t key) {
    return (value >> 24) == key;
}

template <class Map>
void finds_race_growth_and_frees(Map& m) {
    iterlock::test::watchdog dog(std::chrono::seconds(120));
    // Keys [0, stable) are inserted first and only ever reassigned: every find of them must hit. Keys above
    // form a sliding window the writer inserts at the front and erases at the back, so the shards keep
    // growing, evacuating, chaining overflow buckets and freeing them.
    const std::uint64_t stable = 512;
    for (std::uint64_t k = 0; k < stable; ++k) m.insert_or_assign(k, value_of(k, 0));
    const long writes = scaled(400'000, 60'000);
    std::atomic<bool> done{false};
    std::atomic<std::uint64_t> front{stable};
    std::atomic<long> bad{0};
    std::atomic<long> missing_stable{0};
    std::atomic<long> hits{0};
    std::atomic<long> clearing{0};  // odd while a clear and its refill are in progress
    std::thread writer([&] {
        std::uint64_t next = stable;
        const std::uint64_t window = 20'000;
        for (long i = 0; i < writes; ++i) {
            m.insert_or_assign(next, value_of(next, static_cast<std::uint64_t>(i)));
            ++next;
            front.store(next, std::memory_order_relaxed);
            if (next > stable + window) m.erase(next - window - 1);
            m.insert_or_assign(
                static_cast<std::uint64_t>(i) % stable,
                value_of(static_cast<std::uint64_t>(i) % stable, static_cast<std::uint64_t>(i)));
            if (i % 100'000 == 99'999) {  // clear: every overflow bucket freed at once, arrays reset
                clearing.fetch_add(1);
                m.clear();
                for (std::uint64_t k = 0; k < stable; ++k) m.insert_or_assign(k, value_of(k, 1));
                clearing.fetch_add(1);
            }
        }
        done.store(true);
    });
    auto reader = [&](std::uint64_t seed) {
        std::uint64_t x = seed;
        while (!done.load(std::memory_order_relaxed)) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            const std::uint64_t f = front.load(std::memory_order_relaxed);
            const std::uint64_t k = (x >> 33) % (f + 64);  // some beyond the front: misses
            const long c1 = clearing.load();
            const auto v = m.find(k);
            const long c2 = clearing.load();
            if (v) {
                hits.fetch_add(1, std::memory_order_relaxed);
                if (!belongs_to(*v, k)) bad.fetch_add(1);
            } else if (k < stable && c1 == c2 && c1 % 2 == 0) {
                missing_stable.fetch_add(1);  // no clear overlapped the find: a false miss
            }
        }
    };
    std::thread r1(reader, 1), r2(reader, 2);
    writer.join();
    r1.join();
    r2.join();
    EXPECT_EQ(bad.load(), 0) << "a find returned a value never written for its key";
    EXPECT_EQ(missing_stable.load(), 0);
    EXPECT_GT(hits.load(), 0);
    // Quiescent now: every key reads back exactly.
    for (std::uint64_t k = 0; k < stable; ++k) {
        const auto v = m.find(k);
        ASSERT_TRUE(v.has_value()) << k;
        EXPECT_TRUE(belongs_to(*v, k));
    }
}

TEST(OptimisticFind, IsOnForTriviallyCopyableTypesOutsideTSan) {
    using M = iterlock::test::snap_map<std::uint64_t, std::uint64_t>;
    using S = iterlock::test::snap_map<std::string, std::uint64_t>;
    EXPECT_EQ(M::optimistic_reads, !ITERLOCK_DETAIL_TSAN);
    EXPECT_FALSE(S::optimistic_reads);
}

TEST(OptimisticFind, NeverTornNeverFalseMissUnderGrowthAndFrees_Snapshot) {
    iterlock::test::snap_map<std::uint64_t, std::uint64_t> m(2);  // two shards: the writer is always near
    finds_race_growth_and_frees(m);
}

TEST(OptimisticFind, NeverTornNeverFalseMissUnderGrowthAndFrees_Locked) {
    iterlock::test::locked_map<std::uint64_t, std::uint64_t> m(2);
    finds_race_growth_and_frees(m);
}

TEST(OptimisticFind, NeverTornWithLiveSnapshotsRetainingArrays) {
    // Snapshots keep retired arrays (S4); the find path must not care whose list a block is on.
    iterlock::test::snap_map<std::uint64_t, std::uint64_t> m(2);
    std::atomic<bool> done{false};
    std::thread snapshots([&] {
        while (!done.load()) {
            auto s = m.snapshot();
            std::size_t n = 0;
            for (const auto& e : s) n += belongs_to(e.second, e.first) ? 1 : 0;
            EXPECT_EQ(n, s.size());
        }
    });
    finds_race_growth_and_frees(m);
    done.store(true);
    snapshots.join();
    EXPECT_EQ(m.preserved_bytes(), 0u);
}

// A 12-byte key (copied byte by byte, not in words) and a 24-byte value.
struct key12 {
    std::uint32_t a, b, c;
    friend bool operator==(const key12&, const key12&) = default;
};
struct key12_hash {
    std::size_t operator()(const key12& k) const noexcept {
        return (std::uint64_t{k.a} * 0x9E3779B97F4A7C15ull) ^ (std::uint64_t{k.b} << 17) ^ k.c;
    }
};
struct value24 {
    std::uint64_t x, y, z;  // y == ~x and z == x + 1 always: a torn value breaks it
};

TEST(OptimisticFind, OddSizedTypesNeverTorn) {
    using M = iterlock::concurrent_map<key12, value24, key12_hash>;
    static_assert(M::optimistic_reads || ITERLOCK_DETAIL_TSAN);
    M m(2);
    iterlock::test::watchdog dog(std::chrono::seconds(120));
    const long writes = scaled(300'000, 40'000);
    std::atomic<bool> done{false};
    std::atomic<long> bad{0};
    std::thread writer([&] {
        for (long i = 0; i < writes; ++i) {
            const auto k = static_cast<std::uint32_t>(i % 30'000);
            const std::uint64_t x = static_cast<std::uint64_t>(i) * 2654435761u;
            m.insert_or_assign(key12{k, k ^ 7u, k * 3u}, value24{x, ~x, x + 1});
            if (i % 3 == 0) m.erase(key12{k / 2, (k / 2) ^ 7u, (k / 2) * 3u});
        }
        done.store(true);
    });
    std::thread reader([&] {
        std::uint32_t k = 0;
        while (!done.load(std::memory_order_relaxed)) {
            k = (k + 7919) % 30'000;
            if (auto v = m.find(key12{k, k ^ 7u, k * 3u}); v && (v->y != ~v->x || v->z != v->x + 1))
                bad.fetch_add(1);
        }
    });
    writer.join();
    reader.join();
    EXPECT_EQ(bad.load(), 0);
}

// Hot keys: one writer keeps reassigning and erasing a few keys with 128-byte values; readers find exactly
// those keys, so many finds overlap a write. Without validation torn values show within a run.
struct value128 {
    std::uint64_t w[16];  // all equal
    bool whole() const noexcept {
        return std::all_of(std::begin(w), std::end(w), [&](std::uint64_t x) { return x == w[0]; });
    }
};
TEST(OptimisticFind, HotKeysNeverTorn) {
    using M = iterlock::concurrent_map<std::uint64_t, value128>;
    M m(1);
    iterlock::test::watchdog dog(std::chrono::seconds(120));
    const long writes = scaled(2'000'000, 200'000);
    std::atomic<bool> done{false};
    std::atomic<long> bad{0};
    std::atomic<long> found{0};
    std::thread writer([&] {
        for (long i = 0; i < writes; ++i) {
            const std::uint64_t k = static_cast<std::uint64_t>(i) % 8;
            const std::uint64_t x = static_cast<std::uint64_t>(i) * 0x9E3779B97F4A7C15ull;
            if (i % 5 == 4) {
                m.erase(k);
            } else {
                value128 v;
                std::fill(std::begin(v.w), std::end(v.w), x);
                m.insert_or_assign(k, v);
            }
        }
        done.store(true);
    });
    std::thread reader([&] {
        std::uint64_t k = 0;
        while (!done.load(std::memory_order_relaxed)) {
            k = (k + 1) % 8;
            if (auto v = m.find(k)) {
                found.fetch_add(1, std::memory_order_relaxed);
                if (!v->whole()) bad.fetch_add(1);
            }
        }
    });
    writer.join();
    reader.join();
    EXPECT_EQ(bad.load(), 0);
    EXPECT_GT(found.load(), 0);
}

// Repeated growth from empty: keys 0..7 go in first and stay; the writer then grows the map through every
// size up to 2^10 buckets while readers look the first keys up, so finds keep meeting growth in progress
// (old and new arrays, evacuated and unevacuated buckets, retired arrays). One map per round; all stay alive
// until the readers stop.
TEST(OptimisticFind, NoFalseMissWhileGrowingFromEmpty) {
    using M = iterlock::test::snap_map<std::uint64_t, std::uint64_t>;
    const int rounds = static_cast<int>(scaled(300, 40));
    std::vector<std::unique_ptr<M>> maps;
    for (int i = 0; i < rounds; ++i) maps.push_back(std::make_unique<M>(1));
    iterlock::test::watchdog dog(std::chrono::seconds(120));
    std::atomic<int> current{-1};
    std::atomic<bool> done{false};
    std::atomic<long> misses{0};
    std::atomic<long> bad{0};
    std::thread writer([&] {
        for (int r = 0; r < rounds; ++r) {
            M& m = *maps[static_cast<std::size_t>(r)];
            for (std::uint64_t k = 0; k < 8; ++k) m.insert_or_assign(k, value_of(k, 0));
            current.store(r);
            for (std::uint64_t k = 8; k < 8000; ++k) {
                m.insert_or_assign(k, value_of(k, 0));
                if (k % 3 == 0) m.erase(k - 1);
            }
        }
        done.store(true);
    });
    auto reader = [&] {
        std::uint64_t k = 0;
        while (!done.load(std::memory_order_relaxed)) {
            const int r = current.load();
            if (r < 0) continue;
            k = (k + 1) % 8;
            const auto v = maps[static_cast<std::size_t>(r)]->find(k);
            if (!v) {
                misses.fetch_add(1);
            } else if (!belongs_to(*v, k)) {
                bad.fetch_add(1);
            }
        }
    };
    std::thread r1(reader), r2(reader);
    writer.join();
    r1.join();
    r2.join();
    EXPECT_EQ(misses.load(), 0) << "a key present throughout was reported missing";
    EXPECT_EQ(bad.load(), 0);
}

}  // namespace
