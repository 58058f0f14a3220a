// tests/concurrent/concurrent_differential_test.cpp: concurrent_map against a mutex-protected
// std::unordered_map under concurrent random operations, for both iteration policies.
//
// Why the comparison is sound: each thread owns a disjoint key range, so the results of its operations on
// those keys depend on its own history only (the reference is updated right after, under its mutex); keys of
// the shared range are operated on only while the reference mutex is held, so both maps see the shared
// operations in the same order. Each result is compared at once, and the final contents (and the revision,
// S6) must match exactly. A reader walks the map meanwhile and checks every entry it sees is well formed.
#include <atomic>
#include <cstdint>
#include <latch>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include <gtest/gtest.h>

#include "iterlock/concurrent_map.hpp"
#include "support/concurrent_maps.hpp"
#include "support/contents.hpp"
#include "support/scale.hpp"
#include "support/watchdog.hpp"

namespace {

using iterlock::seed;
using iterlock::test::scaled;

constexpr long key_stride = 1000000;  // value = key * key_stride + sequence: a value names its key

struct reference {
    std::mutex mu;
    std::unordered_map<long, long> m;
    std::uint64_t writes = 0;  // successful writes, as S6 counts them
};

// One random operation on key k, applied to the map and to the reference; returns false (after reporting)
// if the results differ. Requires: the caller holds ref.mu for shared keys; owned keys are touched only by
// the calling thread.
template <class Map>
bool apply_both(Map& m, reference& ref, std::unique_lock<std::mutex>& lk, long k, long value, unsigned what) {
    auto on_ref = [&](auto f) {
        if (!lk.owns_lock()) {
            std::lock_guard<std::mutex> g(ref.mu);
            return f();
        }
        return f();
    };
    auto report = [&](const char* op, long got, long want) {
        ADD_FAILURE() << op << "(" << k << "): concurrent_map says " << got << ", the reference " << want;
        return false;
    };
    switch (what % 9) {
        case 0: {
            const bool got = m.insert({k, value});
            const bool want = on_ref([&] {
                const bool ins = ref.m.emplace(k, value).second;
                ref.writes += ins ? 1 : 0;
                return ins;
            });
            return got == want || report("insert", got, want);
        }
        case 1: {
            const bool got = m.try_emplace(k, value);
            const bool want = on_ref([&] {
                const bool ins = ref.m.try_emplace(k, value).second;
                ref.writes += ins ? 1 : 0;
                return ins;
            });
            return got == want || report("try_emplace", got, want);
        }
        case 2: {
            const bool got = m.insert_or_assign(k, value);
            const bool want = on_ref([&] {
                ++ref.writes;
                return ref.m.insert_or_assign(k, value).second;
            });
            return got == want || report("insert_or_assign", got, want);
        }
        case 3:
        case 4: {
            const long got = static_cast<long>(m.erase(k));
            const long want = on_ref([&] {
                const long n = static_cast<long>(ref.m.erase(k));
                ref.writes += static_cast<std::uint64_t>(n);
                return n;
            });
            return got == want || report("erase", got, want);
        }
        case 5: {
            const long got = m.find(k).value_or(-1);
            const long want = on_ref([&] {
                auto it = ref.m.find(k);
                return it == ref.m.end() ? -1L : it->second;
            });
            return got == want || report("find", got, want);
        }
        case 6: {
            long seen = -1;
            const bool got = m.update(k, [&](long& v) {
                seen = v;
                v = value;
            });
            const long want = on_ref([&] {
                auto it = ref.m.find(k);
                if (it == ref.m.end()) return -1L;
                const long old = it->second;
                it->second = value;
                ++ref.writes;
                return old;
            });
            return (got == (want != -1) && seen == want) || report("update (old value)", seen, want);
        }
        case 7: {
            long seen = -1;
            const bool got = m.visit(k, [&](const long& key, long& v) {
                EXPECT_EQ(key, k);
                seen = v;
                v += 1;
            });
            const long want = on_ref([&] {
                auto it = ref.m.find(k);
                if (it == ref.m.end()) return -1L;
                const long old = it->second;
                it->second += 1;
                ++ref.writes;
                return old;
            });
            return (got == (want != -1) && seen == want) || report("visit (old value)", seen, want);
        }
        default: {
            long seen = -1;
            const bool got = m.cvisit(k, [&](const long&, const long& v) { seen = v; });
            const bool has = m.contains(k);
            const long want = on_ref([&] {
                auto it = ref.m.find(k);
                return it == ref.m.end() ? -1L : it->second;
            });
            return (got == (want != -1) && has == got && seen == want) || report("cvisit", seen, want);
        }
    }
}

template <class Map>
class CMapDifferential : public iterlock::test::watched {};
using maps = ::testing::Types<iterlock::test::snap_map<long, long>, iterlock::test::locked_map<long, long>>;
TYPED_TEST_SUITE(CMapDifferential, maps);

TYPED_TEST(CMapDifferential, MatchesAMutexProtectedUnorderedMap) {
    constexpr int threads = 3;
    constexpr long owned = 3000;  // keys [t * owned, (t + 1) * owned) belong to thread t
    constexpr long shared_first = threads * owned;
    constexpr long shared_keys = 64;  // keys [shared_first, shared_first + shared_keys) are shared
    const long ops = scaled(200000, 50000);
    for (std::uint64_t sd : {1u, 2u}) {
        TypeParam m(sd == 1 ? 4 : 16, seed{sd});
        reference ref;
        std::latch start(threads + 1);
        std::atomic<int> running{threads};
        std::atomic<bool> failed{false};
        std::vector<std::thread> ts;
        for (int t = 0; t < threads; ++t) {
            ts.emplace_back([&, t] {
                std::mt19937_64 rng(sd * 100 + static_cast<std::uint64_t>(t));
                start.arrive_and_wait();
                for (long i = 0; i < ops && !failed.load(); ++i) {
                    const unsigned what = static_cast<unsigned>(rng());
                    const bool shared = rng() % 5 == 0;
                    const long k = shared ? shared_first + static_cast<long>(rng() % shared_keys)
                                          : t * owned + static_cast<long>(rng() % owned);
                    const long value = k * key_stride + i;
                    std::unique_lock<std::mutex> lk(ref.mu, std::defer_lock);
                    if (shared) lk.lock();
                    if (!apply_both(m, ref, lk, k, value, what)) failed.store(true);
                    if (lk.owns_lock()) lk.unlock();
                    if (!shared && rng() % 4000 == 0) {  // erase_if on this thread's keys only
                        const long rem = static_cast<long>(rng() % 7);
                        auto mine = [&](long key) {
                            return key / owned == t && key < shared_first && key % 7 == rem;
                        };
                        const auto got = m.erase_if([&](const long& key, long&) { return mine(key); });
                        std::lock_guard<std::mutex> g(ref.mu);
                        std::size_t want = 0;
                        for (auto it = ref.m.begin(); it != ref.m.end();) {
                            if (mine(it->first)) {
                                it = ref.m.erase(it);
                                ++want;
                            } else {
                                ++it;
                            }
                        }
                        ref.writes += want;
                        EXPECT_EQ(got, want) << "erase_if";
                    }
                }
                running.fetch_sub(1);
            });
        }
        start.arrive_and_wait();
        long walks = 0;
        while (running.load() > 0 && !failed.load()) {  // every entry a walk produces was written by a writer
            for (const auto& [k, v] : iterlock::test::contents(m)) {
                if (v / key_stride != k || k < 0 || k >= shared_first + shared_keys) {
                    ADD_FAILURE() << "a walk produced entry " << k << " with value " << v;
                    failed.store(true);
                    break;
                }
            }
            ++walks;
        }
        for (auto& t : ts) t.join();
        ASSERT_FALSE(failed.load());
        const std::map<long, long> got = iterlock::test::contents(m);
        const std::map<long, long> want(ref.m.begin(), ref.m.end());
        EXPECT_EQ(got.size(), want.size());
        EXPECT_TRUE(got == want) << "final contents differ";
        EXPECT_EQ(m.size(), want.size());
        EXPECT_EQ(m.revision(), ref.writes) << "S6: one revision per successful write";
        for (long k = 0; k < shared_first + shared_keys; k += 11) {
            auto it = ref.m.find(k);
            EXPECT_EQ(m.find(k), it == ref.m.end() ? std::nullopt : std::optional<long>(it->second)) << k;
        }
        this->RecordProperty("walks", static_cast<int>(walks));
    }
}

}  // namespace
