// tools/demo/contenders.hpp: the four session stores iterlock-demo runs the same load against.
//
// Owns: iterlock_demo::session, the stamp encoding, and the stores std_shared_mutex_store,
//       iterlock_locked_store, iterlock_snapshot_store, tbb_store.
// Every store offers the same three calls, which is all the feature service (feature_service.hpp) uses:
//   prefill(key, session)   before any thread starts; single-threaded
//   put(key, session)       a writer's update of an existing session; any number of threads
//   walk(f)                 one aggregation: f(key, stamp, score) for every session; concurrent with puts
// and a name() that is the contender's name in the table, the CSV and the metrics labels.
// What walk() promises is the point of the demo: the std_shared_mutex and iterlock stores walk one instant of
// the map (a shared lock; iterlock's iteration lock; iterlock's snapshot), the TBB store walks the live map
// without a lock, so a walk may see some of a writer's updates and miss earlier ones.
#pragma once

#include <oneapi/tbb/concurrent_unordered_map.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "iterlock/concurrent_map.hpp"

namespace iterlock_demo {

// A session's state as the feature service keeps it: which update wrote it last (the stamp) and a feature
// value the aggregator sums.
struct session {
    std::uint64_t stamp = 0;  // writer << stamp_writer_shift | sequence number (see make_stamp)
    double score = 0;
};

// Stamp layout (bits):  63..56 writer id | 55..0 the writer's sequence number of this update.
inline constexpr unsigned stamp_writer_shift = 56;
inline constexpr std::uint64_t stamp_seq_mask = (std::uint64_t{1} << stamp_writer_shift) - 1;
constexpr std::uint64_t make_stamp(unsigned writer, std::uint64_t seq) noexcept {
    return (static_cast<std::uint64_t>(writer) << stamp_writer_shift) | (seq & stamp_seq_mask);
}
constexpr unsigned stamp_writer(std::uint64_t stamp) noexcept {
    return static_cast<unsigned>(stamp >> stamp_writer_shift);
}
constexpr std::uint64_t stamp_seq(std::uint64_t stamp) noexcept {
    return stamp & stamp_seq_mask;
}

using key_type = std::uint64_t;

// std::unordered_map behind one std::shared_mutex: writers take it exclusively, a walk shared.
class std_shared_mutex_store {
  public:
    static constexpr std::string_view name() { return "std_shared_mutex"; }
    void reserve(std::size_t n) { m_.reserve(n); }
    void prefill(key_type k, session s) { m_.insert_or_assign(k, s); }
    void put(key_type k, session s) {
        std::unique_lock lk(mu_);
        m_.insert_or_assign(k, s);
    }
    template <class F>
    void walk(F&& f) const {
        std::shared_lock lk(mu_);
        for (const auto& [k, v] : m_) f(k, v.stamp, v.score);
    }
    std::size_t size() const {
        std::shared_lock lk(mu_);
        return m_.size();
    }

  private:
    mutable std::shared_mutex mu_;
    std::unordered_map<key_type, session> m_;
};

// iterlock::concurrent_map with the locked iteration policy: a walk holds the iteration lock (L1).
class iterlock_locked_store {
  public:
    using map_type = iterlock::locked_concurrent_map<key_type, session>;
    static constexpr std::string_view name() { return "iterlock_locked"; }
    void reserve(std::size_t n) { m_.reserve(n); }
    void prefill(key_type k, session s) { m_.insert_or_assign(k, s); }
    void put(key_type k, session s) { m_.insert_or_assign(k, s); }
    template <class F>
    void walk(F&& f) {
        auto guard = m_.lock_for_iteration();
        for (const auto& [k, v] : guard) f(k, v.stamp, v.score);
    }
    std::size_t size() const { return m_.size(); }
    const map_type& map() const { return m_; }

  private:
    map_type m_;
};

// iterlock::concurrent_map with the default snapshot policy: a walk reads one instant (S1) while writers go
// on.
class iterlock_snapshot_store {
  public:
    using map_type = iterlock::concurrent_map<key_type, session>;
    static constexpr std::string_view name() { return "iterlock_snapshot"; }
    void reserve(std::size_t n) { m_.reserve(n); }
    void prefill(key_type k, session s) { m_.insert_or_assign(k, s); }
    void put(key_type k, session s) { m_.insert_or_assign(k, s); }
    template <class F>
    void walk(F&& f) const {
        auto snap = m_.snapshot();
        for (const auto& [k, v] : snap) f(k, v.stamp, v.score);
    }
    std::size_t size() const { return m_.size(); }
    const map_type& map() const { return m_; }

  private:
    map_type m_;
};

// tbb::concurrent_unordered_map: lookups and traversal are safe beside updates, but nothing makes a
// traversal one instant. The session's fields are atomics so that the walk has no data race; it is still
// not consistent, which is what the violations column shows.
class tbb_store {
  public:
    struct atomic_session {
        atomic_session(std::uint64_t st, double sc) : stamp(st), score(sc) {}
        std::atomic<std::uint64_t> stamp;
        std::atomic<double> score;
    };
    static constexpr std::string_view name() { return "tbb_concurrent_unordered_map"; }
    // TBB 2021.8's reserve() on a map that already holds entries does not return (seen here with 20K
    // entries), so a second run over the same store skips it.
    void reserve(std::size_t n) {
        if (m_.empty()) m_.reserve(n);
    }
    void prefill(key_type k, session s) {
        auto [it, fresh] = m_.emplace(std::piecewise_construct, std::forward_as_tuple(k),
                                      std::forward_as_tuple(s.stamp, s.score));
        if (!fresh) put(k, s);  // a second run over the same store
    }
    void put(key_type k, session s) {
        auto it = m_.find(k);  // every session was prefilled
        it->second.score.store(s.score, std::memory_order_relaxed);
        it->second.stamp.store(s.stamp, std::memory_order_release);
    }
    template <class F>
    void walk(F&& f) const {
        for (const auto& [k, v] : m_)
            f(k, v.stamp.load(std::memory_order_acquire), v.score.load(std::memory_order_relaxed));
    }
    std::size_t size() const { return m_.size(); }

  private:
    tbb::concurrent_unordered_map<key_type, atomic_session> m_;
};

}  // namespace iterlock_demo
