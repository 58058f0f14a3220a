// libFuzzer target for iterlock::map: the input is a stream of operations run on the map and mirrored in a
// std::unordered_map; every result is compared and check_invariants() runs after every operation and
// after every write made during an iteration. Iterations with writes (erase ahead, erase current, insert,
// insert bursts that grow the table, assign, insert-then-erase, clear) are checked against rules I1..I5
// by tests/support/iteration_oracle.hpp.
//
// Input format (bytes; reading past the end yields zeros and ends the run):
//   byte 0          bit 0: key kind (0: std::uint16_t, 1: short/long std::string); bits 1..7: map seed
//   then ops        opcode byte: low 4 bits select the operation, bit 7 narrows keys to 0..63 (more hits)
//                   followed by the operation's arguments (u16 little-endian keys and values, count bytes)
// The replay executable (fuzz/replay_main.cpp) feeds the committed corpus through the same entry point.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "iterlock/map.hpp"
#include "support/iteration_oracle.hpp"

namespace {

[[noreturn]] void fail(const char* what, const std::string& detail = {}) {
    std::fprintf(stderr, "map_fuzz: %s %s\n", what, detail.c_str());
    std::fflush(stderr);
    std::abort();
}

#define MAP_FUZZ_CHECK(cond, ...)                                            \
    do {                                                                     \
        if (!(cond)) fail("check failed: " #cond, std::string{__VA_ARGS__}); \
    } while (0)

class byte_reader {
  public:
    byte_reader(const std::uint8_t* data, std::size_t size) : p_(data), n_(size) {}
    bool done() const noexcept { return n_ == 0; }
    std::uint8_t u8() noexcept {
        if (n_ == 0) return 0;
        --n_;
        return *p_++;
    }
    std::uint16_t u16() noexcept {
        const std::uint16_t lo = u8();
        return static_cast<std::uint16_t>(lo | (u8() << 8));
    }

  private:
    const std::uint8_t* p_;
    std::size_t n_;
};

struct u16_keys {
    using key = std::uint16_t;
    static key make(std::uint16_t x) { return x; }
};

struct string_keys {
    using key = std::string;
    // Every 7th key is long enough to live on the heap; the others fit the small-string buffer.
    static key make(std::uint16_t x) {
        std::string s = std::to_string(x);
        if (x % 7 == 0) s.append(20, static_cast<char>('a' + x % 26));
        return s;
    }
};

constexpr std::size_t max_entries = 2048;  // keeps the O(n) invariant checks cheap per input
// Inserts allowed during one iteration: evacuation pauses while an iterator is live, so these lengthen the
// old array's overflow chains and make every lookup (and check_invariants) slower until the iteration ends.
constexpr std::size_t max_inserts_per_iteration = 256;
// During an iteration, check_invariants() runs after each write only while the map is this small.
constexpr std::size_t check_each_write_below = 512;

template <class Keys>
class fuzz_run {
  public:
    using key = typename Keys::key;
    using map_type = iterlock::map<key, int>;
    using mirror_type = std::unordered_map<key, int>;

    fuzz_run(byte_reader& in, std::uint64_t seed) : in_(in), map_(iterlock::seed{seed}) {}

    void run() {
        while (!in_.done()) {
            step();
            check();
        }
        compare_all();
    }

  private:
    key next_key(std::uint8_t op) {
        const std::uint16_t raw = in_.u16();
        return Keys::make((op & 0x80) ? static_cast<std::uint16_t>(raw & 63u) : raw);
    }

    void check() {
        MAP_FUZZ_CHECK(map_.size() == mirror_.size());
        try {
            map_.check_invariants();
        } catch (const std::logic_error& e) {
            fail("check_invariants:", e.what());
        }
    }

    void compare_all() {
        std::size_t n = 0;
        for (const auto& kv : map_) {
            auto it = mirror_.find(kv.first);
            MAP_FUZZ_CHECK(it != mirror_.end(), "iteration produced a key the mirror lacks");
            MAP_FUZZ_CHECK(it->second == kv.second);
            ++n;
        }
        MAP_FUZZ_CHECK(n == mirror_.size(), "iteration missed entries");
    }

    void insert_new(const key& k, int v) {
        if (mirror_.count(k) != 0 || mirror_.size() >= max_entries) return;
        MAP_FUZZ_CHECK(map_.insert({k, v}).second);
        mirror_.emplace(k, v);
    }

    void step() {
        const std::uint8_t op = in_.u8();
        switch (op & 0x0F) {
            case 0: {
                const key k = next_key(op);
                const int v = in_.u16();
                const bool had = mirror_.count(k) != 0;
                if (!had && mirror_.size() >= max_entries) break;
                auto [p, inserted] = map_.insert({k, v});
                MAP_FUZZ_CHECK(inserted == !had);
                if (!had) mirror_.emplace(k, v);
                MAP_FUZZ_CHECK(p && p->first == k && p->second == mirror_.at(k));
                break;
            }
            case 1: {
                const key k = next_key(op);
                const int v = in_.u16();
                const bool had = mirror_.count(k) != 0;
                if (!had && mirror_.size() >= max_entries) break;
                auto [p, inserted] = map_.insert_or_assign(k, v);
                MAP_FUZZ_CHECK(inserted == !had && p && p->second == v);
                mirror_[k] = v;
                break;
            }
            case 2: {
                const key k = next_key(op);
                const int v = in_.u16();
                const bool had = mirror_.count(k) != 0;
                if (!had && mirror_.size() >= max_entries) break;
                auto [p, inserted] = map_.try_emplace(k, v);
                MAP_FUZZ_CHECK(inserted == !had);
                mirror_.try_emplace(k, v);
                MAP_FUZZ_CHECK(p && p->second == mirror_.at(k));
                break;
            }
            case 3: {
                const key k = next_key(op);
                const int v = in_.u8();
                if (mirror_.count(k) == 0 && mirror_.size() >= max_entries) break;
                map_[k] += v;
                mirror_[k] += v;
                break;
            }
            case 4: {
                const key k = next_key(op);
                MAP_FUZZ_CHECK(map_.erase(k) == mirror_.erase(k));
                break;
            }
            case 5: {
                const key k = next_key(op);
                auto it = mirror_.find(k);
                const bool has = it != mirror_.end();
                auto p = map_.find(k);
                MAP_FUZZ_CHECK(static_cast<bool>(p) == has);
                if (has) MAP_FUZZ_CHECK(p->first == k && p->second == it->second);
                const std::optional<int> got = static_cast<const map_type&>(map_).get(k);
                MAP_FUZZ_CHECK(got.has_value() == has && (!has || *got == it->second));
                MAP_FUZZ_CHECK(map_.contains(k) == has && map_.count(k) == (has ? 1u : 0u));
                break;
            }
            case 6: {  // bulk insert: grows the table
                const unsigned count = in_.u8();
                const std::uint16_t base = in_.u16();
                for (unsigned i = 0; i < count; ++i) {
                    insert_new(Keys::make(static_cast<std::uint16_t>(base + i)), static_cast<int>(i));
                }
                break;
            }
            case 7: {  // erase_if: shrinks the content
                const unsigned mod = 2u + in_.u8() % 8u;
                const auto n =
                    map_.erase_if([&](const key&, int& v) { return static_cast<unsigned>(v) % mod == 0; });
                std::size_t expect = 0;
                for (auto it = mirror_.begin(); it != mirror_.end();) {
                    if (static_cast<unsigned>(it->second) % mod == 0) {
                        it = mirror_.erase(it);
                        ++expect;
                    } else {
                        ++it;
                    }
                }
                MAP_FUZZ_CHECK(n == expect);
                break;
            }
            case 8:
                map_.clear();
                mirror_.clear();
                break;
            case 9:
                map_.reserve(in_.u16() % 4096u);
                break;
            case 10:
                compare_all();
                break;
            case 11:
                iterate_with_writes(op);
                break;
            case 12: {  // copy: equal, valid, and sometimes continue on the copy
                map_type copy(map_);
                MAP_FUZZ_CHECK(copy == map_);
                try {
                    copy.check_invariants();
                } catch (const std::logic_error& e) {
                    fail("copy check_invariants:", e.what());
                }
                if (in_.u8() & 1) map_ = copy;
                break;
            }
            case 13: {  // move out and back, swap through a temporary
                map_type tmp(std::move(map_));
                MAP_FUZZ_CHECK(map_.empty());
                map_.insert({Keys::make(1), 1});  // moved-from is usable
                map_.swap(tmp);
                MAP_FUZZ_CHECK(tmp.size() == 1);
                break;
            }
            case 14: {  // erase a range of keys
                const unsigned count = in_.u8();
                const std::uint16_t base = in_.u16();
                for (unsigned i = 0; i < count; ++i) {
                    const key k = Keys::make(static_cast<std::uint16_t>(base + i));
                    MAP_FUZZ_CHECK(map_.erase(k) == mirror_.erase(k));
                }
                break;
            }
            default: {  // I5: clear after `steps` steps ends the iteration
                const unsigned steps = in_.u8() % 16u;
                auto it = map_.begin();
                for (unsigned i = 0; i < steps && it != map_.end(); ++i) ++it;
                map_.clear();
                mirror_.clear();
                ++it;  // I5: the next increment ends the iteration
                MAP_FUZZ_CHECK(it == map_.end(), "I5: iterator not at end() after clear() and ++");
                break;
            }
        }
    }

    // One iteration whose steps are driven by input bytes; checks I1..I5 through the oracle.
    void iterate_with_writes(std::uint8_t op) {
        iterlock::test::iteration_oracle<key, int> oracle(mirror_);
        std::vector<key> start_keys;
        for (const auto& kv : mirror_) start_keys.push_back(kv.first);
        std::size_t budget = max_inserts_per_iteration;
        auto may_insert = [&](const key& nk) {
            if (budget == 0 || mirror_.count(nk) != 0 || mirror_.size() >= max_entries) return false;
            --budget;
            return true;
        };
        for (auto it = map_.begin(); it != map_.end(); ++it) {
            const key k = it->first;
            const std::string err = oracle.on_produced(k, it->second, mirror_);
            if (!err.empty()) fail("iteration:", err);
            switch (in_.u8() % 8) {
                case 1:  // erase the current entry
                    MAP_FUZZ_CHECK(map_.erase(k) == 1);
                    mirror_.erase(k);
                    oracle.on_erase(k);
                    break;
                case 2:  // erase a key that was present at the start: ahead or behind
                    if (!start_keys.empty()) {
                        const key& victim = start_keys[in_.u16() % start_keys.size()];
                        const auto n = map_.erase(victim);
                        MAP_FUZZ_CHECK(n == mirror_.erase(victim));
                        if (n == 1) oracle.on_erase(victim);
                    }
                    break;
                case 3: {  // insert one key
                    const key nk = next_key(op);
                    if (may_insert(nk)) {
                        insert_new(nk, 3);
                        oracle.on_insert(nk);
                    }
                    break;
                }
                case 4: {  // burst of inserts: grows the table mid-iteration
                    const unsigned count = in_.u8() % 64u;
                    const std::uint16_t base = in_.u16();
                    for (unsigned i = 0; i < count; ++i) {
                        const key nk = Keys::make(static_cast<std::uint16_t>(base + i));
                        if (may_insert(nk)) {
                            insert_new(nk, 4);
                            oracle.on_insert(nk);
                        }
                    }
                    break;
                }
                case 5:  // assign through the iterator
                    it->second += 5;
                    mirror_[k] += 5;
                    break;
                case 6: {  // insert then erase at once: never produced
                    const key nk = next_key(op);
                    if (may_insert(nk)) {
                        MAP_FUZZ_CHECK(map_.insert({nk, 6}).second);
                        oracle.on_insert(nk);
                        MAP_FUZZ_CHECK(map_.erase(nk) == 1);
                        oracle.on_erase(nk);
                    }
                    break;
                }
                case 7:  // clear: the iteration ends (I5)
                    map_.clear();
                    mirror_.clear();
                    oracle.on_clear();
                    ++it;
                    MAP_FUZZ_CHECK(it == map_.end(), "I5: iterator not at end() after clear() and ++");
                    check();
                    return;
                default:
                    continue;  // no write: nothing to check
            }
            if (map_.size() < check_each_write_below) {
                check();
            } else {
                MAP_FUZZ_CHECK(map_.size() == mirror_.size());
            }
        }
        const std::string err = oracle.finish();
        if (!err.empty()) fail("iteration:", err);
    }

    byte_reader& in_;
    map_type map_;
    mirror_type mirror_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    byte_reader in(data, size);
    const std::uint8_t mode = in.u8();
    const std::uint64_t seed = mode >> 1;
    if (mode & 1) {
        fuzz_run<string_keys> run(in, seed);
        run.run();
    } else {
        fuzz_run<u16_keys> run(in, seed);
        run.run();
    }
    return 0;
}
