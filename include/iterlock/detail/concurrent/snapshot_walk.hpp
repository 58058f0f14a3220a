// iterlock/detail/concurrent/snapshot_walk.hpp: what concurrent_map::snapshot() returns — a registered
// snapshot of a sharded_table and the walk that copies it out, one batch of buckets at a time.
//
// Owns: iterlock::detail::snapshot_walk (concurrent_map::snapshot_view) and its input iterator.
// Invariants: a live snapshot_walk holds one registration (marker) in its table's snapshot registry and
//       releases it exactly once (destruction or move-assignment); a batch holds only entries of the
//       snapshot's instant (S2), copied either under the shard's shared lock or by a sequence-lock read
//       that is kept only if validated (the same copy code serves both: copy_buckets<Racy>); a snapshot
//       that the budget expired (S7) reads nothing of the map again: every read checks expiry under the
//       shard's lock or inside the epoch section it reads in, and throws snapshot_expired instead.
// Rules S1-S7 are concurrent_map.hpp's.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <utility>

#include "iterlock/detail/concurrent/sharded_table.hpp"
#include "iterlock/detail/util/inline.hpp"

namespace iterlock::detail {

template <class Table>
class snapshot_walk {
    using K = typename Table::key_type;
    using V = typename Table::mapped_type;
    using size_type = std::size_t;
    using slot_type = typename Table::slot_type;
    using shard = typename Table::shard;
    using bucket = typename Table::bucket;
    using table_type = typename Table::table_type;
    static constexpr bool optimistic_reads = Table::optimistic_reads;
    static constexpr bool transparent = Table::transparent;
    static constexpr int optimistic_attempts = Table::optimistic_attempts;

  public:
    snapshot_walk(snapshot_walk&& o) noexcept
        : m_(std::exchange(o.m_, nullptr)), marker_(o.marker_), taken_(o.taken_), totals_(o.totals_) {}
    snapshot_walk& operator=(snapshot_walk&& o) noexcept {
        if (this != &o) {
            release();
            m_ = std::exchange(o.m_, nullptr);
            marker_ = o.marker_;
            taken_ = o.taken_;
            totals_ = o.totals_;
        }
        return *this;
    }
    snapshot_walk(const snapshot_walk&) = delete;
    snapshot_walk& operator=(const snapshot_walk&) = delete;
    ~snapshot_walk() { release(); }

    // Entries at the snapshot's instant (S2). O(shards) shard locks, shared, on the first call.
    // snapshot_expired (S7) once the budget expired the snapshot, here and in every call below that reads.
    size_type size() const { return totals().count; }
    bool empty() const { return size() == 0; }
    // The number of writes the snapshot reflects (S6).
    std::uint64_t revision() const { return totals().revision; }
    std::uint64_t marker() const noexcept { return marker_; }
    // Whether the map's snapshot budget expired this snapshot (S7): its next read throws snapshot_expired.
    bool expired() const noexcept { return m_ != nullptr && m_->registry_.expired(marker_); }
    // Hook for versioned_map: shard i's revision at the snapshot's instant (one shared shard lock).
    std::uint64_t detail_shard_revision(std::size_t i) const { return counters_of(m_->shards_[i]).revision; }

    std::optional<V> find(const K& k) const { return find_impl(k); }
    template <class K2>
    requires transparent std::optional<V> find(const K2& k)
    const { return find_impl(k); }
    bool contains(const K& k) const { return find(k).has_value(); }

    class iterator;
    iterator begin() const { return iterator(this); }
    iterator end() const noexcept { return iterator(); }

    // A forward walk over copies of the entries, one batch of buckets at a time.
    class iterator {
      public:
        using iterator_category = std::input_iterator_tag;
        using value_type = std::pair<const K, V>;
        using difference_type = std::ptrdiff_t;
        using pointer = const value_type*;
        using reference = const value_type&;

        iterator() = default;
        reference operator*() const noexcept { return *cur_; }
        pointer operator->() const noexcept { return cur_; }
        // snapshot_expired (S7) if the budget expired the snapshot, at the first step that reads the map
        // after the expiry (the next batch); the entries already copied into this batch are the snapshot's
        // own copies and are still yielded (checking every step cost a quarter more instructions per
        // entry: docs/DESIGN.md, section 7).
        iterator& operator++() {
            if (++cur_ == end_) fill();
            return *this;
        }
        void operator++(int) { ++*this; }
        // Copies of one iterator share its batch (an input iterator: only the one advanced last is
        // valid), so equal positions are equal addresses; the end is null.
        friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.cur_ == b.cur_; }

      private:
        friend class snapshot_walk;
        // Entries copied out of the shard: a buffer that grows by doubling and is reused batch after
        // batch, so the copy loops store through a pointer with one capacity test per bucket (room())
        // instead of one per entry. Invariant: [data, data + n) are constructed slot_type objects.
        struct batch {
            slot_type* data = nullptr;
            std::size_t n = 0;
            std::size_t cap = 0;

            batch() = default;
            batch(const batch&) = delete;
            batch& operator=(const batch&) = delete;
            ~batch() {
                clear();
                if (data != nullptr) std::allocator<slot_type>().deallocate(data, cap);
            }
            std::size_t size() const noexcept { return n; }
            void clear() noexcept { truncate(0); }
            void truncate(std::size_t keep) noexcept {
                if constexpr (!std::is_trivially_destructible_v<slot_type>)
                    for (std::size_t i = keep; i < n; ++i) data[i].~slot_type();
                n = std::min(n, keep);
            }
            // Room for `more` entries past n. Strong guarantee: if the allocation or a copy throws, the
            // batch is as it was.
            void room(std::size_t more) {
                if (cap - n >= more) [[likely]]
                    return;
                grow(n + more);
            }
            ITERLOCK_DETAIL_NOINLINE void grow(std::size_t need) {
                // At least a full batch of main buckets without overflow: no growth in the common case.
                const std::size_t c = std::max({need, 2 * cap, batch_buckets * bucket_cnt * 2});
                std::allocator<slot_type> a;
                slot_type* d = a.allocate(c);
                try {
                    std::uninitialized_copy(data, data + n, d);
                } catch (...) {
                    a.deallocate(d, c);
                    throw;
                }
                const std::size_t keep = n;
                clear();
                if (data != nullptr) a.deallocate(data, cap);
                data = d;
                n = keep;
                cap = c;
            }
        };

        explicit iterator(const snapshot_walk* s) : s_(s), batch_(std::make_shared<batch>()) { fill(); }

        // Copies the next batch of chains (at least one entry, unless the walk is over: then cur_ and
        // end_ are null).
        void fill() {
            batch_->clear();
            const Table& m = *s_->m_;
            while (batch_->size() == 0) {
                if (shard_ == m.shards_.size()) {
                    s_ = nullptr;
                    cur_ = end_ = nullptr;
                    return;
                }
                shard& sh = m.shards_[shard_];
                m.entry_check();
                if (!have_structure_) {
                    // The arrays named here stay allocated while this snapshot lives (S4) and is not
                    // expired (S7), so later batches may read them without the lock.
                    const std::shared_lock<shard_lock> held(sh.lock);
                    s_->check_live();
                    st_ = sh.t.chain_watch().structure_at(sh.t, s_->marker_);
                    bucket_ = 0;
                    have_structure_ = true;
                }
                const std::size_t nb = std::size_t{1} << st_.B;
                const std::size_t walk = !st_.cur ? 0 : st_.old ? (st_.same_size ? nb : nb >> 1) : nb;
                const std::size_t stop = std::min(walk, bucket_ + batch_buckets);
                bool copied = false;
                if constexpr (optimistic_reads) copied = copy_batch_racy(sh, stop);
                if (!copied) {
                    const std::shared_lock<shard_lock> held(sh.lock);
                    s_->check_live();
                    copy_buckets<false>(sh, bucket_, stop);
                }
                bucket_ = stop;
                if (bucket_ == walk) {
                    ++shard_;
                    have_structure_ = false;
                }
            }
            cur_ = batch_->data;
            end_ = batch_->data + batch_->size();
        }
        using version_type = chain_version<slot_type>;
        static constexpr std::uint32_t max_racy_entries = std::uint32_t{1} << 20;

        // ---- copying buckets into the batch -----------------------------------------------------
        // Copies buckets [bucket_, stop) of the snapshot's structure into the batch. One code for both
        // ways of reading (Racy): under the shard's shared lock (plain loads), or, for trivially copyable K
        // and V, as a sequence-lock read, which takes no lock that a writer could wait for (S3 says when a
        // walk falls back to the shared lock, which a writer does wait for): every load a relaxed atomic
        // load (detail/util/racy_read.hpp), the epoch section keeping every block reachable from the
        // snapshot's structure allocated (overflow buckets, dropped versions: detail/reclaim/epoch.hpp),
        // and a batch that a writer overlapped read again, under the lock after a few tries. A racy copy
        // returns false where it met a torn chain; a plain one always succeeds.
        bool copy_batch_racy(shard& sh, std::size_t stop) {
            epoch_domain& d = epoch_domain::global();
            epoch_domain::record& rec = d.mine();
            const std::size_t mark = batch_->size();
            for (int attempt = 0; attempt < optimistic_attempts; ++attempt) {
                const std::uint64_t token = sh.lock.read_begin();  // outside the section (E2)
                bool ok = true;
                bool expired = false;
                {
                    const epoch_domain::section in_section(d, rec);
                    // Inside the section: an expiry's frees wait for it, or it sees the expiry (S7).
                    expired = s_->expired();
                    if (!expired) ok = copy_buckets<true>(sh, bucket_, stop);
                }
                if (expired) {
                    batch_->truncate(mark);
                    throw_expired();
                }
                if (ok && sh.lock.read_validate(token)) return true;
                batch_->truncate(mark);
            }
            return false;
        }
        // Buckets [from, stop): the loop that runs per bucket. Where the snapshot's structure has no old
        // array (no growth at its instant: the common case) each bucket is one chain, copied by the inline
        // steps below; copy_bucket is the general case.
        template <bool Racy>
        bool copy_buckets(shard& sh, std::size_t from, std::size_t stop) {
            if (st_.old) [[unlikely]] {
                for (std::size_t j = from; j < stop; ++j)
                    if (!copy_bucket<Racy>(sh, j)) return false;
                return true;
            }
            const std::uint64_t m = s_->marker_;
            for (std::size_t j = from; j < stop; ++j)
                if (!copy_chain<Racy>(sh, st_.cur.at(j), m)) return false;
            return true;
        }
        template <bool Racy>
        bool copy_bucket(shard& sh, std::size_t j) {
            const std::uint64_t m = s_->marker_;
            if (!st_.old) return copy_chain<Racy>(sh, st_.cur.at(j), m);
            const bucket ob = st_.old.at(j);
            const version_type* v = nullptr;
            if (!version_at<Racy>(sh, ob, m, v)) return false;
            if (v != nullptr) return push_version<Racy>(v);  // preserved: not evacuated at the instant
            if (!(Racy ? ob.evacuated_racy() : is_evacuated_mark(ob.top[0]))) return copy_live<Racy>(ob);
            if (!copy_chain<Racy>(sh, st_.cur.at(j), m)) return false;
            if (st_.same_size) return true;
            return copy_chain<Racy>(sh, st_.cur.at(j + ((std::size_t{1} << st_.B) >> 1)), m);
        }
        template <bool Racy>
        ITERLOCK_DETAIL_ALWAYS_INLINE bool copy_chain(shard& sh, const bucket& head, std::uint64_t m) {
            const version_type* v = nullptr;
            if (!version_at<Racy>(sh, head, m, v)) [[unlikely]]
                return false;
            if (v != nullptr) [[unlikely]]
                return push_version<Racy>(v);
            return copy_live<Racy>(head);
        }
        // The version of the chain at `head` that the snapshot must see instead of the live chain, or null.
        template <bool Racy>
        bool version_at(shard& sh, const bucket& head, std::uint64_t m, const version_type*& v) const {
            if constexpr (Racy) return sh.t.chain_watch().chain_at_racy(head, m, v);
            v = sh.t.chain_watch().chain_at(head, m);
            return true;
        }
        // Constructs a copy of *e at the batch's end (a racy copy reads each member once, relaxed).
        template <bool Racy>
        static void copy_entry(slot_type* to, const slot_type* e) {
            if constexpr (Racy) {
                racy_copy_to(to, e);  // the whole slot, words straight into the batch
            } else {
                ::new (static_cast<void*>(to)) slot_type(*e);
            }
        }
        // Counts what was constructed into the batch, also when a copy throws (plain copies may).
        struct batch_commit {
            batch& out;
            slot_type* to;  // one past the last entry constructed
            ~batch_commit() { out.n = static_cast<std::size_t>(to - out.data); }
        };
        template <bool Racy>
        bool push_version(const version_type* v) {
            // Racy: read after chain_at_racy()'s acquire fence, which pairs with preserve's release fence;
            // the walk is validated afterwards.
            const std::uint32_t n = Racy ? __atomic_load_n(&v->count, __ATOMIC_RELAXED) : v->count;
            if (Racy && n > max_racy_entries) return false;
            const slot_type* e = const_cast<version_type*>(v)->entries();
            batch& out = *batch_;
            out.room(n);
            batch_commit c{out, out.data + out.n};
            for (std::uint32_t i = 0; i < n; ++i, ++c.to) copy_entry<Racy>(c.to, e + i);
            return true;
        }
        // The live chain at b: its first member inline (a chain has no overflow member in the common case),
        // the others in copy_rest.
        template <bool Racy>
        ITERLOCK_DETAIL_ALWAYS_INLINE bool copy_live(bucket b) {
            std::uint8_t group[bucket_cnt];
            copy_member<Racy>(b, group);
            if (has_empty_rest(group)) [[likely]]
                return true;
            return copy_rest<Racy>(b);
        }
        template <bool Racy>
        ITERLOCK_DETAIL_NOINLINE bool copy_rest(bucket b) {
            std::uint8_t group[bucket_cnt];
            for (std::size_t hops = 1; hops < max_racy_entries / bucket_cnt; ++hops) {
                b = Racy ? b.next_racy() : b.next();
                if (!b) return true;
                copy_member<Racy>(b, group);
                if (has_empty_rest(group)) return true;
            }
            return false;  // longer than any real chain: torn
        }
        // Copies the full slots of member b into the batch; `group` receives the tophash bytes it read.
        template <bool Racy>
        ITERLOCK_DETAIL_ALWAYS_INLINE void copy_member(const bucket& b, std::uint8_t (&group)[bucket_cnt]) {
            batch& out = *batch_;  // loaded once: the copies' stores could otherwise alias batch_
            if constexpr (Racy) {
                b.load_top_racy(group);
            } else {
                std::copy_n(b.top, bucket_cnt, group);
            }
            out.room(bucket_cnt);
            const slot_type* from = b.slot(0);
            batch_commit c{out, out.data + out.n};
            for (slot_mask msk = match_full(group); msk != 0; msk &= msk - 1, ++c.to)
                copy_entry<Racy>(c.to, from + std::countr_zero(msk));
        }

        [[noreturn]] static void throw_expired() { snapshot_walk::throw_expired(); }

        static constexpr std::size_t batch_buckets = 32;
        const snapshot_walk* s_ = nullptr;
        std::shared_ptr<batch> batch_;
        const slot_type* cur_ = nullptr;  // the entry in batch_ (null: the end)
        const slot_type* end_ = nullptr;  // one past batch_'s last entry
        std::size_t shard_ = 0;
        std::size_t bucket_ = 0;
        bool have_structure_ = false;
        structure<typename table_type::array_ref> st_{};
    };

  private:
    friend Table;
    snapshot_walk(const Table* m, std::uint64_t marker) : m_(m), marker_(marker) {
        if constexpr (Table::metrics_on) taken_ = std::chrono::steady_clock::now();
    }

    // S7: throws if the budget expired this snapshot. Called under the shard lock the read then holds.
    void check_live() const {
        if (expired()) [[unlikely]]
            throw_expired();
    }
    [[noreturn]] static void throw_expired() {
        throw snapshot_expired(
            "iterlock: this snapshot was expired to keep the map's snapshot memory within its budget "
            "(concurrent_map::set_snapshot_budget, rule S7); what only it needed is freed. Take a new "
            "snapshot and start again, or raise the budget");
    }

    struct totals_t {
        size_type count = 0;
        std::uint64_t revision = 0;
        bool known = false;
    };
    const totals_t& totals() const {
        check_live();
        if (!totals_.known) {
            totals_t t;
            for (shard& s : m_->shards_) {
                const shard_counters c = counters_of(s);
                t.count += c.count;
                t.revision += c.revision;
            }
            t.known = true;
            totals_ = t;
        }
        return totals_;
    }
    // Shard s's entry count and revision at the snapshot's instant (one shared shard lock).
    shard_counters counters_of(shard& s) const {
        m_->entry_check();
        const std::shared_lock<shard_lock> held(s.lock);
        check_live();
        // Relaxed: under the shard's lock (shared), which orders the writer's store before this.
        return s.t.chain_watch().counters_at(
            shard_counters{s.t.size(), s.revision().load(std::memory_order_relaxed)}, marker_);
    }

    template <class K2>
    std::optional<V> find_impl(const K2& k) const {
        const std::uint64_t h = m_->key_hash(k);
        shard& s = m_->shard_for(h);
        m_->entry_check();
        const std::shared_lock<shard_lock> held(s.lock);
        check_live();
        const auto st = s.t.chain_watch().structure_at(s.t, marker_);
        if (!st.cur) return std::nullopt;
        auto search_version = [&](auto* v) -> std::optional<V> {
            for (std::uint32_t i = 0; i < v->count; ++i)
                if (m_->eq_(k, v->entries()[i].first)) return v->entries()[i].second;
            return std::nullopt;
        };
        auto search_live = [&](const bucket& head) -> std::optional<V> {
            const std::uint8_t top = tophash_of(h);
            for (bucket b = head; b; b = b.next()) {
                for (slot_mask msk = match_byte(b.top, top); msk != 0; msk &= msk - 1) {
                    const slot_type* e = b.slot(static_cast<unsigned>(std::countr_zero(msk)));
                    if (m_->eq_(k, e->first)) return e->second;
                }
                if (has_empty_rest(b.top)) break;
            }
            return std::nullopt;
        };
        const std::size_t mask = (std::size_t{1} << st.B) - 1;
        if (st.old) {
            const std::size_t omask = st.same_size ? mask : mask >> 1;
            const bucket ob = st.old.at(h & omask);
            if (auto* v = s.t.chain_watch().chain_at(ob, marker_)) return search_version(v);
            if (!is_evacuated_mark(ob.top[0])) return search_live(ob);
        }
        const bucket head = st.cur.at(h & mask);
        if (auto* v = s.t.chain_watch().chain_at(head, marker_)) return search_version(v);
        return search_live(head);
    }

    void release() noexcept {
        if (m_ != nullptr) {
            m_->release_snapshot(marker_, taken_);
            m_ = nullptr;
        }
    }

    const Table* m_;
    std::uint64_t marker_;
    std::chrono::steady_clock::time_point taken_{};  // the hold histogram's start (metrics only)
    mutable totals_t totals_;
};

}  // namespace iterlock::detail
