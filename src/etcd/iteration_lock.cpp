// iterlock::etcd::iteration_lock: the gated write, the guard acquisition, the lease session with its
// keep-alive thread, and the local view of the lock's keys (iterlock/etcd/iteration_lock.hpp, D-L1..D-L7).
//
// Invariants:
//   1. Every decision is a compare inside one etcd Txn; the view (a list-then-watch of L) only says when a
//      retry may succeed. A stale view costs a refused retry, never a wrong grant.
//   2. A waiting writer's key is deleted on every way out of write() (success: in the write's own Txn).
//   3. A guard's key is named after the lease it lives on, so a key of an expired lease can never be taken
//      for a live one, and the fence compares its create_revision.
//   4. The session's valid_until is the send time of the last keep-alive etcd answered (or of the grant)
//      plus the TTL: never later than etcd's own expiry, so the local check fires no later than etcd's.
//   5. A waiting writer's intent (its registration key carrying its one put, see "Hand-off writes") lands
//      at most once: the releaser's Txn compares the intent's mod_revision and deletes it, the writer's
//      own retry compares its create_revision, and the writer withdraws it only by a compare-delete. So
//      exactly one of them applies the put, and the writer learns which from etcd, never from a guess.
//
// Hand-off writes. A writer blocked by a guard whose write is one plain put (no compares of its own:
// insert_or_assign) puts that put into its registration key's value (the intent). The process releasing
// the last guard applies the intents its view shows in its release Txn: the guard key's delete, each
// intent's put and the intent's delete land at one revision, compared on the fence, on "no other guard"
// and on each intent's mod_revision (else a plain release follows). The waiting writer returns when its
// view shows its intent deleted by someone else while its lease is alive: the hand-off costs the
// release's round trip and a watch event, not the waiter's own write as well. D-L1 holds: the put lands
// at the revision where the last guard goes. docs/ETCD.md section 7.
#include "iterlock/etcd/iteration_lock.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <thread>

#include "iterlock/errors.hpp"
#include "iterlock/etcd/detail/mirror_core.hpp"

namespace iterlock::etcd {

using clock = std::chrono::steady_clock;

namespace detail {

struct lock_session {
    std::int64_t lease = 0;
    std::atomic<std::int64_t> valid_until_ns{0};  // steady_clock ns (invariant 4)
    std::atomic<bool> expired{false};

    static std::int64_t now_ns() {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now().time_since_epoch()).count();
    }
    bool alive() const { return !expired.load() && now_ns() < valid_until_ns.load(); }
};

struct lock_hold {
    std::string key;
    std::int64_t fence = 0;   // H: the key's create_revision
    std::int64_t queued = 0;  // Q
    std::shared_ptr<lock_session> session;
    int depth = 1;  // nested guards of one thread (L7); touched by the owning thread only
    bool released = false;
    bool realtime = false;
    clock::time_point since{};
};

}  // namespace detail

namespace {

std::string hex(std::int64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

compare none_in(const std::string& key, const std::string& end) {
    compare c;
    c.key = key;
    c.range_end = end;
    c.what = compare::target::create_revision;
    c.how = compare::op::equal;
    c.number = 0;
    return c;
}
compare all_after(const std::string& key, const std::string& end, std::int64_t rev) {
    compare c = none_in(key, end);
    c.how = compare::op::greater;
    c.number = rev;
    return c;
}
bool has_prefix(const std::string& s, const std::string& p) {
    return s.compare(0, p.size(), p) == 0;
}

// A hand-off intent (invariant 5): 'I', the data key's length in 16 hex digits, the key, the value. Only
// a write of one put without a lease and without compares of the caller's has one.
std::string encode_intent(const std::vector<compare>& user, const std::vector<txn_op>& then) {
    if (!user.empty() || then.size() != 1 || then[0].what != txn_op::kind::put || then[0].lease != 0)
        return {};
    return "I" + hex(static_cast<std::int64_t>(then[0].key.size())) + then[0].key + then[0].value;
}
bool decode_intent(const std::string& v, std::string& key, std::string& value) {
    if (v.size() < 17 || v[0] != 'I') return false;
    const auto n = std::strtoull(v.substr(1, 16).c_str(), nullptr, 16);
    if (n > v.size() - 17) return false;
    key = v.substr(17, n);
    value = v.substr(17 + n);
    return true;
}
constexpr std::size_t max_handoff_intents = 32;        // etcd's --max-txn-ops is 128 by default
constexpr std::size_t max_handoff_bytes = 512 * 1024;  // of etcd's 1.5 MiB request limit

// The thread's guards, per lock (L7 and D-L7 find them here).
struct thread_hold {
    const void* lock;
    std::weak_ptr<detail::lock_hold> hold;
};
std::vector<thread_hold>& thread_holds() {
    thread_local std::vector<thread_hold> v;
    return v;
}

}  // namespace

struct iteration_lock::impl : detail::mirror_sink {
    client& c;
    lock_options opts;
    std::string guards_, guards_end_, writers_, writers_end_, rt_, rt_end_, be_, be_end_;

    // The view (mirror_sink; invariant 1).
    mutable std::mutex view_mu;
    std::condition_variable view_cv;
    std::map<std::string, key_value> view;  // guarded by view_mu
    std::int64_t view_rev = 0;              // guarded by view_mu
    // This process's registered intents (invariant 5): key -> the revision the view saw it deleted at,
    // 0 while it is there. Guarded by view_mu.
    std::map<std::string, std::int64_t> intents;

    // The session.
    std::mutex session_mu;
    std::shared_ptr<detail::lock_session> session;  // guarded by session_mu
    std::atomic<std::uint64_t> seq{0};

    // Counters.
    // The in-process lock's metrics (metrics.hpp): started / success / timeout / error, waits by
    // [role][priority], hold times by priority, writes that did not wait, misuse.
    std::atomic<std::uint64_t> m_started{0}, m_success{0}, m_error{0}, m_misuse{0};
    std::atomic<std::uint64_t> m_write_zero_waits[2] = {0, 0};
    iterlock::detail::wait_histogram m_wait[2][2], m_hold[2];
    std::atomic<std::uint64_t> n_guards{0}, n_timeouts{0}, n_guard_waits{0}, n_refusals{0}, n_gated{0},
        n_waited{0}, n_fenced{0}, n_expiries{0}, n_handed_off{0}, n_handoffs{0};

    std::mutex stop_mu;
    std::condition_variable stop_cv;
    bool stopping = false;
    std::thread keeper;
    detail::mirror_core core;

    impl(client& cl, lock_options o)
        : c(cl),
          opts(std::move(o)),
          core(cl, opts.prefix, *this, detail::mirror_config{0, std::chrono::milliseconds(200)}) {
        if (opts.prefix.empty()) throw error(errc::invalid_argument, "etcd::iteration_lock: empty prefix");
        guards_ = opts.prefix + "i/";
        guards_end_ = prefix_end(guards_);
        writers_ = opts.prefix + "w/";
        writers_end_ = prefix_end(writers_);
        rt_ = writers_ + "r/";
        rt_end_ = prefix_end(rt_);
        be_ = writers_ + "b/";
        be_end_ = prefix_end(be_);
        core.start();
        keeper = std::thread([this] { keep_alive_loop(); });
    }
    ~impl() override {
        {
            std::lock_guard<std::mutex> g(stop_mu);
            stopping = true;
        }
        stop_cv.notify_all();
        keeper.join();
        std::shared_ptr<detail::lock_session> s;
        {
            std::lock_guard<std::mutex> g(session_mu);
            s = session;
        }
        if (s && !s->expired.load()) try {
                c.lease_revoke(s->lease);
            } catch (...) {
            }
        core.stop();
    }

    // ---- view ----
    void replace_all(std::vector<key_value>&& kvs, std::int64_t revision) override {
        {
            std::lock_guard<std::mutex> g(view_mu);
            view.clear();
            for (auto& kv : kvs) view.emplace(kv.key, std::move(kv));
            view_rev = revision;
            for (auto& [k, at] : intents)  // gone in the new listing: deleted at or before `revision`
                if (at == 0 && view.find(k) == view.end()) at = revision;
        }
        view_cv.notify_all();
    }
    void apply(std::vector<event>& events, std::int64_t revision) override {
        {
            std::lock_guard<std::mutex> g(view_mu);
            for (auto& e : events) {
                if (e.what == event::kind::erase) {
                    view.erase(e.kv.key);
                    if (auto it = intents.find(e.kv.key); it != intents.end() && it->second == 0)
                        it->second = e.kv.mod_revision > 0 ? e.kv.mod_revision : revision;
                } else
                    view[e.kv.key] = e.kv;
            }
            view_rev = revision;
        }
        view_cv.notify_all();
    }
    void progressed(std::int64_t revision) override {
        {
            std::lock_guard<std::mutex> g(view_mu);
            view_rev = std::max(view_rev, revision);
        }
        view_cv.notify_all();
    }
    // Keys of [from, to) in the view with create_revision <= `upto` (0: any).
    bool view_has(const std::string& from, const std::string& to, std::int64_t upto) const {
        for (auto it = view.lower_bound(from); it != view.end() && it->first < to; ++it)
            if (upto == 0 || it->second.create_revision <= upto) return true;
        return false;
    }
    // Waits until the view has reached `min_rev` and `ready()` holds (under view_mu), or until `until`.
    // Returns false only when `deadline` passed; true also on the periodic wake-up (a safety retry).
    template <class Ready>
    bool wait_view(std::int64_t min_rev, Ready&& ready, const std::optional<clock::time_point>& deadline) {
        auto until = clock::now() + std::chrono::seconds(1);
        if (deadline && *deadline < until) until = *deadline;
        std::unique_lock<std::mutex> g(view_mu);
        view_cv.wait_until(g, until, [&] { return view_rev >= min_rev && ready(); });
        return !(deadline && clock::now() >= *deadline && !(view_rev >= min_rev && ready()));
    }

    // ---- session (D-L6) ----
    std::shared_ptr<detail::lock_session> live_session() {
        std::lock_guard<std::mutex> g(session_mu);
        if (session && session->alive()) return session;
        if (session && !session->expired.exchange(true)) n_expiries.fetch_add(1);
        const auto sent = detail::lock_session::now_ns();
        const auto r = c.lease_grant(opts.ttl.count());
        auto s = std::make_shared<detail::lock_session>();
        s->lease = r.id;
        s->valid_until_ns =
            sent + std::chrono::duration_cast<std::chrono::nanoseconds>(
                       std::chrono::seconds(std::min<std::int64_t>(r.ttl_s, opts.ttl.count())))
                       .count();
        session = s;
        stop_cv.notify_all();
        return s;
    }
    void keep_alive_loop() {
        const auto every = opts.keep_alive.count() > 0
                               ? opts.keep_alive
                               : std::chrono::duration_cast<std::chrono::milliseconds>(opts.ttl) / 3;
        std::unique_lock<std::mutex> g(stop_mu);
        while (!stopping) {
            stop_cv.wait_for(g, every, [&] { return stopping; });
            if (stopping) break;
            g.unlock();
            std::shared_ptr<detail::lock_session> s;
            {
                std::lock_guard<std::mutex> sg(session_mu);
                s = session;
            }
            if (s && !s->expired.load()) {
                const auto sent = detail::lock_session::now_ns();
                try {
                    const auto ttl = c.lease_keep_alive(s->lease);
                    if (ttl <= 0) {
                        if (!s->expired.exchange(true)) n_expiries.fetch_add(1);
                    } else {
                        const auto until =
                            sent + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       std::chrono::seconds(std::min<std::int64_t>(ttl, opts.ttl.count())))
                                       .count();
                        // Only forward, and never for a lease the local clock already gave up.
                        auto cur = s->valid_until_ns.load();
                        if (sent < cur)
                            while (cur < until && !s->valid_until_ns.compare_exchange_weak(cur, until)) {
                            }
                    }
                } catch (const error&) {
                    // Not renewed: valid_until stays, and the local check expires the guard in time.
                }
            }
            g.lock();
        }
    }

    [[noreturn]] void throw_expired(detail::lock_hold& h, const char* what) {
        if (h.session && !h.session->expired.exchange(true)) n_expiries.fetch_add(1);
        throw error(errc::lease_expired,
                    std::string("etcd::iteration_lock: ") + what + ": the lease of guard " + h.key +
                        " (fence revision " + std::to_string(h.fence) +
                        ") expired; the guard no longer excludes writers and this step was not applied. "
                        "Take a new guard.");
    }
    void check(detail::lock_hold& h) {
        if (h.released) throw lock_error("etcd::iteration_guard: used after release");
        if (!h.session->alive()) throw_expired(h, "check");
    }

    // ---- holds of the calling thread ----
    std::shared_ptr<detail::lock_hold> held_here() const {
        auto& v = thread_holds();
        for (auto it = v.begin(); it != v.end();) {
            auto h = it->hold.lock();
            if (!h || h->released) {
                it = v.erase(it);
                continue;
            }
            if (it->lock == this) return h;
            ++it;
        }
        return nullptr;
    }

    // ---- acquisition (D-L2..D-L5) ----
    iteration_guard acquire(iteration_lock& self, const std::optional<clock::time_point>& deadline) {
        iteration_guard out;
        if (auto h = held_here()) {  // L7
            ++h->depth;
            out.lock_ = &self;
            out.hold_ = std::move(h);
            return out;
        }
        const bool realtime = current_priority() == priority::realtime;
        m_started.fetch_add(1, std::memory_order_relaxed);
        const auto t0 = clock::now();
        try {
            return acquire_slow(self, deadline, realtime, t0);
        } catch (...) {
            m_error.fetch_add(1, std::memory_order_relaxed);
            throw;
        }
    }
    iteration_guard acquire_slow(iteration_lock& self, const std::optional<clock::time_point>& deadline,
                                 bool realtime, clock::time_point t0) {
        iteration_guard out;
        std::int64_t queued = 0;
        bool waited = false;
        for (;;) {
            auto s = live_session();
            std::vector<compare> when;
            {
                std::lock_guard<std::mutex> g(view_mu);
                if (realtime) {
                    when.push_back(queued == 0 || !view_has(rt_, rt_end_, 0)
                                       ? none_in(rt_, rt_end_)
                                       : all_after(rt_, rt_end_, queued));
                } else {
                    when.push_back(none_in(rt_, rt_end_));
                    when.push_back(queued == 0 || !view_has(be_, be_end_, 0)
                                       ? none_in(be_, be_end_)
                                       : all_after(be_, be_end_, queued));
                }
            }
            const std::string key = guards_ + hex(s->lease) + "/" + hex(static_cast<std::int64_t>(seq++));
            txn_result r;
            try {
                r = c.txn(when, {txn_op::put(key, {}, s->lease)}, {txn_op::range(writers_, writers_end_)});
            } catch (const error& e) {
                if (std::string(e.what()).find("lease not found") == std::string::npos) throw;
                if (!s->expired.exchange(true)) n_expiries.fetch_add(1);
                continue;
            }
            if (r.succeeded) {
                auto h = std::make_shared<detail::lock_hold>();
                h->key = key;
                h->fence = r.revision;
                h->queued = queued == 0 ? r.revision : queued;
                h->session = std::move(s);
                h->realtime = realtime;
                h->since = clock::now();
                m_wait[static_cast<int>(lock_role::iterator)][realtime ? 1 : 0].record_shared(h->since - t0);
                thread_holds().push_back({this, h});
                n_guards.fetch_add(1);
                if (waited) n_guard_waits.fetch_add(1);
                out.lock_ = &self;
                out.hold_ = std::move(h);
                return out;
            }
            if (queued == 0) queued = r.revision;
            n_refusals.fetch_add(1);
            waited = true;
            std::int64_t max_create = 0;
            if (!r.ranges.empty())
                for (const auto& kv : r.ranges[0].kvs) max_create = std::max(max_create, kv.create_revision);
            const bool ok = wait_view(
                max_create,
                [&] {
                    if (realtime) return !view_has(rt_, rt_end_, queued);
                    return !view_has(rt_, rt_end_, 0) && !view_has(be_, be_end_, queued);
                },
                deadline);
            if (!ok) {
                n_timeouts.fetch_add(1);
                return out;  // D-L5: no key was put
            }
        }
    }

    void release(detail::lock_hold& h) noexcept {
        if (h.released) return;
        if (--h.depth > 0) return;
        h.released = true;
        // A guard that ends on an expired lease ends in error: its exclusion had lapsed (the lease-expiry
        // alert, tools/monitoring/iterlock_alerts.yml).
        (h.session->alive() ? m_success : m_error).fetch_add(1, std::memory_order_relaxed);
        m_hold[h.realtime ? 1 : 0].record_shared(clock::now() - h.since);
        if (h.session->expired.load()) return;
        compare fence;
        fence.key = h.key;
        fence.what = compare::target::create_revision;
        fence.number = h.fence;
        if (h.session->alive()) try {
                if (release_with_intents(h, fence)) return;
            } catch (...) {
                // Lost or refused: the compares make the plain release below harmless either way.
            }
        for (int attempt = 0; attempt < 3; ++attempt) {
            try {
                c.txn({fence}, {txn_op::erase(h.key)});
                return;
            } catch (...) {
                // may_have_applied or unavailable: the compare makes a repeat harmless; the lease ends it
                // at the latest.
            }
        }
    }

    // The release of the last guard with the waiting writers' intents (invariant 5). False when the view
    // shows another guard or no intent, or when a compare failed (then nothing changed).
    bool release_with_intents(detail::lock_hold& h, const compare& fence) {
        std::vector<compare> when{fence, none_in(guards_, h.key),
                                  none_in(h.key + std::string(1, '\0'), guards_end_)};
        std::vector<txn_op> then{txn_op::erase(h.key)};
        {
            std::lock_guard<std::mutex> g(view_mu);
            for (auto it = view.lower_bound(guards_); it != view.end() && it->first < guards_end_; ++it)
                if (it->first != h.key) return false;
            std::vector<std::string> data_keys;
            std::size_t bytes = 0;
            for (const auto* range : {&rt_, &be_}) {  // realtime writers' intents first (D-L4)
                const auto& end = range == &rt_ ? rt_end_ : be_end_;
                for (auto it = view.lower_bound(*range); it != view.end() && it->first < end; ++it) {
                    std::string k, v;
                    if (!decode_intent(it->second.value, k, v)) continue;
                    if (std::find(data_keys.begin(), data_keys.end(), k) != data_keys.end()) continue;
                    if (data_keys.size() == max_handoff_intents ||
                        bytes + k.size() + v.size() > max_handoff_bytes)
                        break;
                    bytes += k.size() + v.size();
                    compare same;
                    same.key = it->first;
                    same.what = compare::target::mod_revision;
                    same.number = it->second.mod_revision;
                    when.push_back(same);
                    then.push_back(txn_op::put(k, std::move(v)));
                    then.push_back(txn_op::erase(it->first));
                    data_keys.push_back(std::move(k));
                }
            }
            if (data_keys.empty()) return false;
        }
        if (!c.txn(when, then).succeeded) return false;
        n_handoffs.fetch_add(1);
        return true;
    }

    // ---- writes (D-L1, D-L6, D-L7) ----
    write_result fenced_write(detail::lock_hold& h, const std::vector<compare>& user,
                              const std::vector<txn_op>& then) {
        check(h);
        std::vector<compare> when;
        compare fence;
        fence.key = h.key;
        fence.what = compare::target::create_revision;
        fence.number = h.fence;
        when.push_back(fence);
        when.push_back(none_in(guards_, h.key));
        when.push_back(none_in(h.key + std::string(1, '\0'), guards_end_));
        when.insert(when.end(), user.begin(), user.end());
        auto r = c.txn(when, then, {txn_op::range(guards_, guards_end_)});
        n_fenced.fetch_add(1);
        if (r.succeeded) return {true, r.revision, std::move(r)};
        bool mine = false, other = false;
        for (const auto& kv : r.ranges.at(0).kvs) {
            if (kv.key == h.key && kv.create_revision == h.fence)
                mine = true;
            else
                other = true;
        }
        if (!mine) throw_expired(h, "fenced write");
        if (other) m_misuse.fetch_add(1, std::memory_order_relaxed);
        if (other)
            throw lock_error(
                "etcd::iteration_lock: a write on a thread holding a guard while another guard is live "
                "(here or in another process): it would break that guard's exclusion (D-L7), so nothing was "
                "written. Write after releasing, or hold the only guard.");
        return {false, r.revision, std::move(r)};
    }

    // The revision the view saw `key` (an intent of this process) deleted at; waits for it. Requires: the
    // key is known to be gone from etcd.
    std::int64_t intent_gone_at(const std::string& key) {
        for (;;) {
            std::unique_lock<std::mutex> g(view_mu);
            auto it = intents.find(key);
            if (it == intents.end()) return view_rev;
            if (it->second != 0) {
                const auto at = it->second;
                intents.erase(it);
                return at;
            }
            view_cv.wait_for(g, std::chrono::seconds(1));
        }
    }
    void drop_intent(const std::string& key) {
        std::lock_guard<std::mutex> g(view_mu);
        intents.erase(key);
    }
    // Takes a registered intent back (a compare-delete on its create revision). False when it was gone:
    // a releaser applied it, or its lease expired.
    bool withdraw_intent(const std::string& key, std::int64_t created) {
        compare mine;
        mine.key = key;
        mine.what = compare::target::create_revision;
        mine.number = created;
        if (!c.txn({mine}, {txn_op::erase(key)}).succeeded) return false;
        drop_intent(key);
        return true;
    }
    // The intent `key` is gone from etcd and this writer did not delete it: a releaser applied it, unless
    // the lease may have expired first (then nobody can say; E2).
    write_result intent_applied(const std::string& key, const std::shared_ptr<detail::lock_session>& s) {
        const bool alive = s->alive();
        const auto at = intent_gone_at(key);
        if (!alive)
            throw error(errc::may_have_applied,
                        "etcd::iteration_lock: a waiting write's hand-off intent " + key +
                            " is gone and its lease may have expired: the write may or may not have been "
                            "applied by a guard's release; read it back");
        n_handed_off.fetch_add(1);
        txn_result r;
        r.succeeded = true;
        r.revision = at;
        return {true, at, std::move(r)};
    }

    write_result gated_write(const std::vector<compare>& user, const std::vector<txn_op>& then) {
        n_gated.fetch_add(1);
        std::optional<clock::time_point> deadline;
        if (opts.write_wait.count() > 0) deadline = clock::now() + opts.write_wait;
        const std::string intent = encode_intent(user, then);
        std::optional<std::string> wkey;
        std::int64_t wcreated = 0;
        std::shared_ptr<detail::lock_session> wsession;
        struct cleanup {
            impl& self;
            std::optional<std::string>& key;
            ~cleanup() {
                if (!key) return;
                self.drop_intent(*key);
                try {
                    self.c.erase(*key);
                } catch (...) {
                }  // the lease removes it at the latest
            }
        } on_exit{*this, wkey};
        bool waited = false;
        const int prio = current_priority() == priority::realtime ? 1 : 0;
        const auto t0 = clock::now();
        auto done = [&](write_result w) {
            if (waited) {
                n_waited.fetch_add(1);
                m_wait[static_cast<int>(lock_role::writer)][prio].record_shared(clock::now() - t0);
            } else {
                m_write_zero_waits[prio].fetch_add(1, std::memory_order_relaxed);
            }
            return w;
        };
        // Invariant 5: once an intent is registered, a failure of etcd may hide a hand-off that landed.
        try {
            for (;;) {
                std::vector<compare> when{none_in(guards_, guards_end_)};
                when.insert(when.end(), user.begin(), user.end());
                std::vector<txn_op> ops = then;
                std::vector<txn_op> otherwise{txn_op::range(guards_, guards_end_)};
                if (wkey) {
                    ops.push_back(txn_op::erase(*wkey));
                    if (!intent.empty()) {
                        compare mine;
                        mine.key = *wkey;
                        mine.what = compare::target::create_revision;
                        mine.number = wcreated;
                        when.push_back(mine);
                        otherwise.push_back(txn_op::range(*wkey));
                    }
                }
                auto r = c.txn(when, ops, otherwise);
                if (r.succeeded) {
                    if (wkey) {
                        drop_intent(*wkey);
                        wkey.reset();  // deleted by the write itself (invariant 2)
                        r.deleted.pop_back();
                    }
                    return done({true, r.revision, std::move(r)});
                }
                if (wkey && !intent.empty() && r.ranges.at(1).kvs.empty()) {  // a releaser applied it
                    const auto k = *wkey;
                    wkey.reset();
                    return done(intent_applied(k, wsession));
                }
                const auto& guards = r.ranges.at(0).kvs;
                if (guards.empty()) return {false, r.revision, std::move(r)};  // the caller's compare failed
                waited = true;
                if (!wkey || !wsession || wsession->expired.load() || !wsession->alive()) {
                    if (wkey) {
                        const auto k = *wkey;
                        if (!intent.empty()) {
                            if (!withdraw_intent(k, wcreated)) {
                                wkey.reset();
                                return done(intent_applied(k, wsession));
                            }
                        } else {
                            try {
                                c.erase(k);
                            } catch (...) {
                            }
                        }
                        wkey.reset();
                    }
                    wsession = live_session();
                    const std::string k = (prio ? rt_ : be_) + hex(wsession->lease) + "/" +
                                          hex(static_cast<std::int64_t>(seq++));
                    if (!intent.empty()) {
                        std::lock_guard<std::mutex> g(view_mu);
                        intents[k] = 0;
                    }
                    wkey = k;
                    wcreated = c.put(k, intent, wsession->lease);
                }
                std::int64_t max_create = 0;
                for (const auto& kv : guards) max_create = std::max(max_create, kv.create_revision);
                const auto& k = *wkey;
                const bool ok = wait_view(
                    max_create,
                    [&] {
                        if (!intent.empty())
                            if (auto it = intents.find(k); it != intents.end() && it->second != 0)
                                return true;
                        return !view_has(guards_, guards_end_, 0);
                    },
                    deadline);
                bool applied = false;
                {
                    std::lock_guard<std::mutex> g(view_mu);
                    auto it = intents.find(k);
                    applied = it != intents.end() && it->second != 0;
                }
                if (applied || (!ok && !intent.empty() && !withdraw_intent(k, wcreated))) {
                    const auto kk = k;
                    wkey.reset();
                    return done(intent_applied(kk, wsession));
                }
                if (!ok) {
                    if (!intent.empty()) wkey.reset();  // withdrawn
                    throw error(errc::deadline,
                                "etcd::iteration_lock: a write waited longer than write_wait (" +
                                    std::to_string(opts.write_wait.count()) +
                                    " ms) for iteration guards to end; nothing was written");
                }
            }
        } catch (const error& e) {
            if (!wkey || intent.empty() || e.code() == errc::may_have_applied) throw;
            throw error(errc::may_have_applied,
                        std::string(e.what()) +
                            " (a hand-off intent of this write was registered: a guard's "
                            "release may have applied it; read it back)");
        }
    }
};

// ---------------------------------------------------------------------------------------------------

std::int64_t iteration_guard::revision() const noexcept {
    return hold_ ? hold_->fence : 0;
}
std::int64_t iteration_guard::queued_revision() const noexcept {
    return hold_ ? hold_->queued : 0;
}
void iteration_guard::check() const {
    if (!lock_) throw lock_error("etcd::iteration_guard::check on a guard that owns nothing");
    lock_->p_->check(*hold_);
}
void iteration_guard::release() noexcept {
    if (!lock_) return;
    lock_->p_->release(*hold_);
    lock_ = nullptr;
    hold_.reset();
}

iteration_lock::iteration_lock(client& c, lock_options o) : p_(std::make_unique<impl>(c, std::move(o))) {}
iteration_lock::~iteration_lock() = default;

iteration_guard iteration_lock::lock_for_iteration() {
    return p_->acquire(*this, std::nullopt);
}
iteration_guard iteration_lock::try_lock_for_iteration(std::chrono::milliseconds timeout) {
    return p_->acquire(*this, clock::now() + timeout);
}
bool iteration_lock::held_for_iteration() const noexcept {
    try {
        return p_->held_here() != nullptr;
    } catch (...) {
        return false;
    }
}

iteration_lock::write_result iteration_lock::write(const std::vector<compare>& when,
                                                   const std::vector<txn_op>& then) {
    if (auto h = p_->held_here()) return p_->fenced_write(*h, when, then);
    return p_->gated_write(when, then);
}

lock_view_state iteration_lock::view_state() const {
    lock_view_state out;
    std::lock_guard<std::mutex> g(p_->view_mu);
    out.revision = p_->view_rev;
    for (const auto& [k, kv] : p_->view) {
        if (has_prefix(k, p_->guards_))
            ++out.guards;
        else if (has_prefix(k, p_->rt_))
            ++out.writers_realtime;
        else if (has_prefix(k, p_->be_))
            ++out.writers_best_effort;
    }
    return out;
}

lock_counters iteration_lock::counters() const noexcept {
    lock_counters out;
    out.guards = p_->n_guards.load();
    out.guard_timeouts = p_->n_timeouts.load();
    out.guard_waits = p_->n_guard_waits.load();
    out.guard_refusals = p_->n_refusals.load();
    out.writes_gated = p_->n_gated.load();
    out.writes_waited = p_->n_waited.load();
    out.writes_fenced = p_->n_fenced.load();
    out.lease_expiries = p_->n_expiries.load();
    out.writes_handed_off = p_->n_handed_off.load();
    out.handoffs_applied = p_->n_handoffs.load();
    return out;
}
map_metrics iteration_lock::metrics() const {
    map_metrics out;
    out.policy = "locked";
    // Relaxed (all): statistics.
    out.iterations_started = p_->m_started.load(std::memory_order_relaxed);
    out.iterations_success = p_->m_success.load(std::memory_order_relaxed);
    out.iterations_timeout = p_->n_timeouts.load(std::memory_order_relaxed);
    out.iterations_error = p_->m_error.load(std::memory_order_relaxed);
    out.misuse_detected = p_->m_misuse.load(std::memory_order_relaxed);
    for (int p = 0; p < 2; ++p) {
        p_->m_wait[static_cast<int>(lock_role::writer)][p].add_to(
            out.lock_wait[static_cast<int>(lock_role::writer)][p],
            p_->m_write_zero_waits[p].load(std::memory_order_relaxed));
        p_->m_wait[static_cast<int>(lock_role::iterator)][p].add_to(
            out.lock_wait[static_cast<int>(lock_role::iterator)][p]);
        p_->m_hold[p].add_to(out.iteration_hold[p]);
    }
    return out;
}

const std::string& iteration_lock::prefix() const noexcept {
    return p_->opts.prefix;
}
std::int64_t iteration_lock::lease_id() const {
    std::lock_guard<std::mutex> g(p_->session_mu);
    return p_->session ? p_->session->lease : 0;
}

}  // namespace iterlock::etcd
