// tests/support/linearizability.hpp: a small linearizability checker for concurrent_map histories (Wing &
// Gong's search with Lowe's memo of visited configurations), over a model of K registers that may be absent.
//
// A history is one op list per thread, in program order, each op stamped with invocation and response times
// from one global atomic counter (x precedes y in real time iff x.res < y.inv). The search linearizes, one at
// a time, an op that no other pending op precedes, applies it to the model, and backtracks when the model
// disagrees with the op's recorded result. Configurations (how many ops of each thread are linearized, plus
// the model state) that failed once are memoized, so the search stays polynomial for a few threads.
//
// Invariants: ops of one thread are linearized in program order; an op can be linearized only if its
// invocation precedes the earliest response among the ops not yet linearized.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

namespace iterlock::test {

constexpr long absent = -1;  // a register's value when the key is not in the map

struct lin_op {
    enum kind_t : std::uint8_t {
        put,       // insert_or_assign(key, value) -> result: 1 if inserted
        emplace,   // try_emplace(key, value)      -> result: 1 if inserted
        erase,     // erase(key)                   -> result: number erased
        update,    // update(key, = value)         -> result: 1 if the key existed
        get,       // find(key)                    -> result: value or absent
        snap_get,  // snapshot().find(key)         -> result: value or absent
        snap_all,  // a whole-map read             -> all: value or absent per key
        cas,       // compare_and_set(key, expected -> value) -> result: 1 if it wrote
    } kind;
    int key = -1;  // -1 for snap_all
    long value = 0;
    long result = 0;
    std::vector<long> all;
    std::uint64_t inv = 0;
    std::uint64_t res = 0;
    long expected = absent;  // cas only
};

inline const char* kind_name(lin_op::kind_t k) {
    switch (k) {
        case lin_op::put:
            return "insert_or_assign";
        case lin_op::emplace:
            return "try_emplace";
        case lin_op::erase:
            return "erase";
        case lin_op::update:
            return "update";
        case lin_op::get:
            return "find";
        case lin_op::snap_get:
            return "snapshot.find";
        case lin_op::snap_all:
            return "snapshot walk";
        case lin_op::cas:
            return "compare_and_set";
    }
    return "?";
}

inline std::string describe(const lin_op& o, int thread) {
    std::ostringstream s;
    s << "t" << thread << " [" << o.inv << "," << o.res << "] " << kind_name(o.kind);
    if (o.kind == lin_op::snap_all) {
        s << " ->";
        for (long v : o.all) s << ' ' << v;
    } else {
        s << "(" << o.key;
        if (o.kind == lin_op::cas) s << ", " << o.expected;
        if (o.kind == lin_op::put || o.kind == lin_op::emplace || o.kind == lin_op::update ||
            o.kind == lin_op::cas)
            s << ", " << o.value;
        s << ") -> " << o.result;
    }
    return s.str();
}

using lin_history = std::vector<std::vector<lin_op>>;  // [thread] -> ops in program order

// Applies `o` to the model `regs` (regs[i] is register `keys[i]`). Returns false if `o`'s recorded result is
// impossible in this state. Keys outside `keys` are ignored (a projection).
inline bool lin_apply(const lin_op& o, std::vector<long>& regs, const std::vector<int>& keys) {
    if (o.kind == lin_op::snap_all) {
        for (std::size_t i = 0; i < keys.size(); ++i)
            if (o.all[static_cast<std::size_t>(keys[i])] != regs[i]) return false;
        return true;
    }
    const auto it = std::find(keys.begin(), keys.end(), o.key);
    if (it == keys.end()) return true;
    long& r = regs[static_cast<std::size_t>(it - keys.begin())];
    const bool present = r != absent;
    switch (o.kind) {
        case lin_op::put:
            if (o.result != (present ? 0 : 1)) return false;
            r = o.value;
            return true;
        case lin_op::emplace:
            if (o.result != (present ? 0 : 1)) return false;
            if (!present) r = o.value;
            return true;
        case lin_op::erase:
            if (o.result != (present ? 1 : 0)) return false;
            r = absent;
            return true;
        case lin_op::update:
            if (o.result != (present ? 1 : 0)) return false;
            if (present) r = o.value;
            return true;
        case lin_op::cas:
            if (o.result != (r == o.expected ? 1 : 0)) return false;
            if (o.result == 1) r = o.value;
            return true;
        case lin_op::get:
        case lin_op::snap_get:
            return o.result == r;
        case lin_op::snap_all:
            break;
    }
    return false;
}

// Whether `h`, restricted to the registers in `keys` (all starting absent), is linearizable.
class lin_checker {
  public:
    lin_checker(const lin_history& h, std::vector<int> keys) : h_(h), keys_(std::move(keys)) {
        for (const auto& ops : h_) {
            std::vector<const lin_op*> mine;
            for (const auto& o : ops) {
                if (o.kind == lin_op::snap_all || std::find(keys_.begin(), keys_.end(), o.key) != keys_.end())
                    mine.push_back(&o);
            }
            ops_.push_back(std::move(mine));
        }
    }

    bool check() {
        std::vector<std::size_t> idx(ops_.size(), 0);
        std::vector<long> regs(keys_.size(), absent);
        return search(idx, regs);
    }

  private:
    struct config_hash {
        std::size_t operator()(const std::vector<long>& v) const noexcept {
            std::size_t h = 0xcbf29ce484222325ull;
            for (long x : v) h = (h ^ static_cast<std::size_t>(x)) * 0x100000001b3ull;
            return h;
        }
    };

    bool search(std::vector<std::size_t>& idx, std::vector<long>& regs) {
        std::uint64_t min_res = std::numeric_limits<std::uint64_t>::max();
        bool all_done = true;
        for (std::size_t t = 0; t < ops_.size(); ++t) {
            if (idx[t] < ops_[t].size()) {
                all_done = false;
                min_res = std::min(min_res, ops_[t][idx[t]]->res);
            }
        }
        if (all_done) return true;
        std::vector<long> config(idx.begin(), idx.end());
        config.insert(config.end(), regs.begin(), regs.end());
        if (failed_.count(config) != 0) return false;
        for (std::size_t t = 0; t < ops_.size(); ++t) {
            if (idx[t] >= ops_[t].size()) continue;
            const lin_op& o = *ops_[t][idx[t]];
            if (o.inv > min_res) continue;  // some pending op responded before this one was invoked
            std::vector<long> next = regs;
            if (!lin_apply(o, next, keys_)) continue;
            ++idx[t];
            const bool ok = search(idx, next);
            --idx[t];
            if (ok) return true;
        }
        failed_.insert(std::move(config));
        return false;
    }

    const lin_history& h_;
    std::vector<int> keys_;
    std::vector<std::vector<const lin_op*>> ops_;
    std::unordered_set<std::vector<long>, config_hash> failed_;
};

// The ops of `h` that touch `key` (or read every key), merged and sorted by invocation, for failure messages.
inline std::string dump_history(const lin_history& h, int key) {
    std::vector<std::pair<std::uint64_t, std::string>> lines;
    for (std::size_t t = 0; t < h.size(); ++t)
        for (const auto& o : h[t])
            if (key < 0 || o.key == key || o.kind == lin_op::snap_all)
                lines.emplace_back(o.inv, describe(o, static_cast<int>(t)));
    std::sort(lines.begin(), lines.end());
    std::ostringstream s;
    for (const auto& l : lines) s << "  " << l.second << "\n";
    return s.str();
}

}  // namespace iterlock::test
