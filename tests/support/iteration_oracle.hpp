// tests/support/iteration_oracle.hpp: checks one iteration of an iterlock::map against Go's iteration rules
// I1..I5, given a std::unordered_map mirror that the caller keeps equal to the map through every write made
// mid-iteration.
//
// Used by the map tests and by fuzz/map_fuzz.cpp, so it depends on nothing but the standard library:
// each check returns an empty string when the rule holds and a description of the violation otherwise.
//
// Entry identity: Go's rules speak of entries, not keys. A key erased and inserted again during the
// iteration is a new entry (generation + 1), which I2 lets the iteration produce even if the old entry with
// the same key was already produced. Invariants kept by the oracle:
//   - `generation_[k]` counts the inserts of k (absent -> present) since the iteration started;
//   - `produced_` holds (key, generation) for every entry the iterator produced;
//   - `stable_` holds the keys present at the start and never erased since: I4 requires each exactly once.
#pragma once

#include <cstddef>
#include <sstream>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace iterlock::test {

template <class K, class V, class Hash = std::hash<K>>
class iteration_oracle {
  public:
    using mirror_type = std::unordered_map<K, V, Hash>;

    // Starts watching an iteration of a map whose content equals `mirror`.
    explicit iteration_oracle(const mirror_type& mirror) {
        for (const auto& kv : mirror) {
            stable_.insert(kv.first);
            generation_.emplace(kv.first, 0);
        }
    }

    // The caller inserted `k`, which was absent, during the iteration (I2: may or may not be produced).
    void on_insert(const K& k) { ++generation_[k]; }

    // The caller erased `k`, which was present, during the iteration (I1: not produced from now on).
    void on_erase(const K& k) { stable_.erase(k); }

    // The caller cleared the map during the iteration (I5).
    void on_clear() { stable_.clear(); }

    // The iterator produced (k, v); `mirror` is the map's content at this moment.
    // Checks I1 (the entry is still present), I3 (this entry was not produced before) and that the produced
    // value is the entry's current value.
    std::string on_produced(const K& k, const V& v, const mirror_type& mirror) {
        ++steps_;
        auto it = mirror.find(k);
        if (it == mirror.end()) {
            return describe("I1 violated: produced key ", k,
                            " which is not in the map (erased before reached)");
        }
        if (!(it->second == v)) {
            return describe("produced key ", k, " with a stale value");
        }
        const auto gen = generation_[k];
        if (!produced_.insert(std::make_pair(k, gen)).second) {
            return describe("I3 violated: key ", k, " produced twice");
        }
        return {};
    }

    // The iteration reached end(). Checks I4: every entry present for the whole iteration was produced.
    std::string finish() const {
        for (const auto& k : stable_) {
            if (produced_.count(std::make_pair(k, std::size_t{0})) == 0) {
                return describe("I4 violated: key ", k,
                                " was present for the whole iteration but not produced");
            }
        }
        return {};
    }

    std::size_t steps() const noexcept { return steps_; }
    bool was_produced(const K& k) const { return produced_.count(std::make_pair(k, generation_.at(k))) != 0; }

  private:
    struct pair_hash {
        std::size_t operator()(const std::pair<K, std::size_t>& p) const {
            return Hash{}(p.first) * 31u + p.second;
        }
    };

    template <class... Parts>
    static std::string describe(const Parts&... parts) {
        std::ostringstream out;
        (out << ... << parts);
        return out.str();
    }

    std::unordered_set<K, Hash> stable_;
    std::unordered_map<K, std::size_t, Hash> generation_;
    std::unordered_set<std::pair<K, std::size_t>, pair_hash> produced_;
    std::size_t steps_ = 0;
};

}  // namespace iterlock::test
