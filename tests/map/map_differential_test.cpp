// Seeded differential test: long random streams of map operations (insert, assign, try_emplace, [], erase,
// erase_if, lookups, iteration with and without writes, clear, copy, reserve) run on iterlock::map and on a
// std::unordered_map mirror; every result is compared. The stream moves through grow, shrink and steady
// phases so the table grows, drains and refills many times.
//
// The small variant calls check_invariants() after every mutation; the 1,000,000-op variant calls it every
// 4096 ops and after every clear/copy/iteration. Failures print the seed and op index; rerun one seed with
// ITERLOCK_TEST_SEED=<seed> (the default seeds are fixed so CI is reproducible).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "iterlock/detail/map/test_access.hpp"
#include "iterlock/map.hpp"
#include "support/iteration_oracle.hpp"

namespace {

using access = iterlock::detail::map_test_access;

std::vector<std::uint64_t> seeds_or(std::vector<std::uint64_t> defaults) {
    if (const char* env = std::getenv("ITERLOCK_TEST_SEED")) return {std::strtoull(env, nullptr, 0)};
    return defaults;
}

struct int_keys {
    using key = std::uint32_t;
    using map = iterlock::map<key, std::uint64_t>;
    static key make(std::uint64_t x) { return static_cast<key>(x); }
};

struct string_keys {
    using key = std::string;
    using map = iterlock::map<key, std::uint64_t>;
    // Short keys stay in the small-string buffer; every 5th key is long enough to live on the heap.
    static key make(std::uint64_t x) {
        std::string s = "k" + std::to_string(x);
        if (x % 5 == 0) s.append(24, static_cast<char>('a' + x % 26));
        return s;
    }
};

struct config {
    std::uint64_t seed;
    std::size_t ops;
    std::size_t invariants_every;  // 1: after every mutation
    unsigned max_key_bits;         // key ranges are drawn up to 2^max_key_bits
    std::size_t phase_ops;         // ops per grow/shrink/steady phase
};

template <class Keys>
class differential_run {
  public:
    using key = typename Keys::key;
    using map_type = typename Keys::map;
    using mirror_type = std::unordered_map<key, std::uint64_t>;

    explicit differential_run(const config& cfg)
        : cfg_(cfg), rng_(cfg.seed), map_(iterlock::seed{cfg.seed}) {}

    void run() {
        for (op_ = 0; op_ < cfg_.ops; ++op_) {
            if (op_ % cfg_.phase_ops == 0) new_phase();
            step();
            if (::testing::Test::HasFatalFailure()) return;
            ASSERT_EQ(map_.size(), mirror_.size()) << where();
            max_size_ = std::max(max_size_, map_.size());
            max_shift_ = std::max(max_shift_, access::table(map_).bucket_shift());
            if (op_ % cfg_.invariants_every == 0) check();
            if (::testing::Test::HasFatalFailure()) return;
        }
        full_compare();
        check();
    }

    // The largest size and bucket array reached: tests check the stream really drove the table through
    // growth (B doublings from the first array's 2^0 buckets).
    std::size_t max_size() const noexcept { return max_size_; }
    unsigned max_bucket_shift() const noexcept { return max_shift_; }

  private:
    enum class phase { grow, shrink, steady };

    std::string where() const {
        return "seed " + std::to_string(cfg_.seed) + " op " + std::to_string(op_) +
               " (rerun: ITERLOCK_TEST_SEED=" + std::to_string(cfg_.seed) + ")";
    }

    void check() {
        try {
            map_.check_invariants();
        } catch (const std::logic_error& e) {
            FAIL() << "check_invariants: " << e.what() << " at " << where();
        }
    }

    void new_phase() {
        const auto r = rng_() % 3;
        phase_ = r == 0 ? phase::grow : r == 1 ? phase::shrink : phase::steady;
        const unsigned bits = 4 + static_cast<unsigned>(rng_() % (cfg_.max_key_bits - 3));
        key_range_ = std::uint64_t{1} << bits;
    }

    key random_key() { return Keys::make(rng_() % key_range_); }
    std::uint64_t random_value() { return rng_(); }

    void step() {
        // Weights out of 1000: (insert-like, erase, lookup) depend on the phase; the rest is rare.
        const unsigned insert_w = phase_ == phase::grow ? 600 : phase_ == phase::shrink ? 150 : 380;
        const unsigned erase_w = phase_ == phase::grow ? 100 : phase_ == phase::shrink ? 550 : 320;
        const unsigned r = static_cast<unsigned>(rng_() % 1000);
        if (r < insert_w) {
            insert_like();
        } else if (r < insert_w + erase_w) {
            erase_one();
        } else if (r < 990) {
            lookup();
        } else {
            rare();
        }
    }

    void mutated() {
        if (cfg_.invariants_every == 1) check();
    }

    void insert_like() {
        const key k = random_key();
        const std::uint64_t v = random_value();
        const bool had = mirror_.count(k) != 0;
        switch (rng_() % 4) {
            case 0: {
                auto [p, inserted] = map_.insert({k, v});
                ASSERT_EQ(inserted, !had) << where();
                ASSERT_TRUE(p) << where();
                ASSERT_EQ(p->first, k) << where();
                if (!had) mirror_.emplace(k, v);
                ASSERT_EQ(p->second, mirror_.at(k)) << where();
                break;
            }
            case 1: {
                auto [p, inserted] = map_.insert_or_assign(k, v);
                ASSERT_EQ(inserted, !had) << where();
                mirror_[k] = v;
                ASSERT_EQ(p->second, v) << where();
                break;
            }
            case 2: {
                auto [p, inserted] = map_.try_emplace(k, v);
                ASSERT_EQ(inserted, !had) << where();
                mirror_.try_emplace(k, v);
                ASSERT_EQ(p->second, mirror_.at(k)) << where();
                break;
            }
            default: {
                map_[k] += v;
                mirror_[k] += v;
                break;
            }
        }
        mutated();
    }

    void erase_one() {
        const key k = random_key();
        ASSERT_EQ(map_.erase(k), mirror_.erase(k)) << where();
        mutated();
    }

    void lookup() {
        const key k = random_key();
        auto it = mirror_.find(k);
        const bool has = it != mirror_.end();
        switch (rng_() % 4) {
            case 0: {
                auto p = map_.find(k);
                ASSERT_EQ(static_cast<bool>(p), has) << where();
                if (has) {
                    ASSERT_EQ(p->first, k) << where();
                    ASSERT_EQ(p->second, it->second) << where();
                }
                break;
            }
            case 1: {
                const std::optional<std::uint64_t> got = map_.get(k);
                ASSERT_EQ(got.has_value(), has) << where();
                if (has) ASSERT_EQ(*got, it->second) << where();
                break;
            }
            case 2:
                ASSERT_EQ(map_.contains(k), has) << where();
                break;
            default: {
                const map_type& cm = map_;
                ASSERT_EQ(cm.count(k), has ? 1u : 0u) << where();
                auto p = cm.find(k);
                ASSERT_EQ(static_cast<bool>(p), has) << where();
                break;
            }
        }
    }

    void rare() {
        switch (rng_() % 8) {
            case 0:
                full_compare();
                break;
            case 1:
                iterate_with_writes();
                break;
            case 2:
                if (rng_() % 8 == 0) {  // clear is rarer still, so tables get big
                    map_.clear();
                    mirror_.clear();
                    check();
                }
                break;
            case 3: {
                map_type copy(map_);
                ASSERT_TRUE(copy == map_) << where();
                ASSERT_EQ(copy.size(), mirror_.size()) << where();
                try {
                    copy.check_invariants();
                } catch (const std::logic_error& e) {
                    FAIL() << "copy: " << e.what() << " at " << where();
                }
                if (rng_() % 2 == 0) {
                    map_ = std::move(copy);  // continue on the copy: its layout differs from the original
                    check();
                }
                break;
            }
            case 4: {
                const auto salt = rng_();
                const auto n = map_.erase_if([&](const key& k, std::uint64_t& v) {
                    return ((std::hash<key>{}(k) ^ salt ^ v) & 15u) == 0;
                });
                std::size_t expect = 0;
                for (auto mit = mirror_.begin(); mit != mirror_.end();) {
                    if (((std::hash<key>{}(mit->first) ^ salt ^ mit->second) & 15u) == 0) {
                        mit = mirror_.erase(mit);
                        ++expect;
                    } else {
                        ++mit;
                    }
                }
                ASSERT_EQ(n, expect) << where();
                check();
                break;
            }
            case 5:
                map_.reserve(static_cast<std::size_t>(rng_() % (2 * key_range_)));
                check();
                break;
            default:
                for (int i = 0; i < 8; ++i) lookup();
                break;
        }
    }

    void full_compare() {
        std::size_t n = 0;
        for (const auto& kv : map_) {
            auto it = mirror_.find(kv.first);
            ASSERT_TRUE(it != mirror_.end()) << "iteration produced a key not in the mirror at " << where();
            ASSERT_EQ(kv.second, it->second) << where();
            ++n;
        }
        ASSERT_EQ(n, mirror_.size()) << where();
    }

    // One iteration with erase-ahead, erase-current, assign and insert bursts, checked by the oracle (I1-I4).
    void iterate_with_writes() {
        iterlock::test::iteration_oracle<key, std::uint64_t> oracle(mirror_);
        std::vector<key> start_keys;
        start_keys.reserve(mirror_.size());
        for (const auto& kv : mirror_) start_keys.push_back(kv.first);
        for (auto it = map_.begin(); it != map_.end(); ++it) {
            const key k = it->first;
            const std::string err = oracle.on_produced(k, it->second, mirror_);
            ASSERT_EQ(err, "") << where();
            switch (rng_() % 6) {
                case 0:  // erase the current entry
                    ASSERT_EQ(map_.erase(k), 1u) << where();
                    mirror_.erase(k);
                    oracle.on_erase(k);
                    break;
                case 1:  // erase a start key: ahead or behind
                    if (!start_keys.empty()) {
                        const key& victim = start_keys[rng_() % start_keys.size()];
                        if (map_.erase(victim) == 1) {
                            ASSERT_EQ(mirror_.erase(victim), 1u) << where();
                            oracle.on_erase(victim);
                        } else {
                            ASSERT_EQ(mirror_.count(victim), 0u) << where();
                        }
                    }
                    break;
                case 2: {  // insert a burst of fresh keys (may grow the table mid-iteration)
                    for (int j = 0; j < 4; ++j) {
                        const key nk = random_key();
                        if (mirror_.count(nk)) continue;
                        ASSERT_TRUE(map_.insert({nk, 1}).second) << where();
                        mirror_.emplace(nk, 1);
                        oracle.on_insert(nk);
                    }
                    break;
                }
                case 3:
                    it->second += 1;  // write through the iterator
                    mirror_[k] += 1;
                    break;
                default:
                    break;
            }
            mutated();
            if (::testing::Test::HasFatalFailure()) return;
        }
        ASSERT_EQ(oracle.finish(), "") << where();
        ASSERT_EQ(map_.size(), mirror_.size()) << where();
        check();
    }

    config cfg_;
    std::mt19937_64 rng_;
    map_type map_;
    mirror_type mirror_;
    std::size_t op_ = 0;
    phase phase_ = phase::grow;
    std::uint64_t key_range_ = 16;
    std::size_t max_size_ = 0;
    unsigned max_shift_ = 0;
};

TEST(MapDifferential, SmallWithInvariantsAfterEveryMutation) {
    for (std::uint64_t seed : seeds_or({1, 2, 3})) {
        differential_run<int_keys> run({seed, 50000, 1, 10, 2500});
        run.run();
        if (HasFatalFailure()) return;
        EXPECT_GE(run.max_bucket_shift(), 6u) << "the stream never grew the table";
    }
}

TEST(MapDifferential, OneMillionOps) {
    for (std::uint64_t seed : seeds_or({20240601})) {
        differential_run<int_keys> run({seed, 1000000, 4096, 15, 20000});
        run.run();
        if (HasFatalFailure()) return;
        EXPECT_GE(run.max_size(), 5000u) << "the stream never grew the table far";
    }
}

TEST(MapDifferential, StringKeys) {
    for (std::uint64_t seed : seeds_or({7, 8})) {
        differential_run<string_keys> run({seed, 150000, 2048, 12, 10000});
        run.run();
        if (HasFatalFailure()) return;
    }
}

TEST(MapDifferential, StringKeysInvariantsAfterEveryMutation) {
    for (std::uint64_t seed : seeds_or({11})) {
        differential_run<string_keys> run({seed, 20000, 1, 9, 2000});
        run.run();
        if (HasFatalFailure()) return;
    }
}

}  // namespace
