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
        n_waited{0}, n_fenced{0}, n_expiries{0};

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
        }
        view_cv.notify_all();
    }
    void apply(std::vector<event>& events, std::int64_t revision) override {
        {
            std::lock_guard<std::mutex> g(view_mu);
            for (auto& e : events) {
                if (e.what == event::kind::erase)
                    view.erase(e.kv.key);
                else
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

    write_result gated_write(const std::vector<compare>& user, const std::vector<txn_op>& then) {
        n_gated.fetch_add(1);
        std::optional<clock::time_point> deadline;
        if (opts.write_wait.count() > 0) deadline = clock::now() + opts.write_wait;
        std::optional<std::string> wkey;
        std::shared_ptr<detail::lock_session> wsession;
        struct cleanup {
            impl& self;
            std::optional<std::string>& key;
            ~cleanup() {
                if (!key) return;
                try {
                    self.c.erase(*key);
                } catch (...) {
                }  // the lease removes it at the latest
            }
        } on_exit{*this, wkey};
        std::vector<compare> when{none_in(guards_, guards_end_)};
        when.insert(when.end(), user.begin(), user.end());
        bool waited = false;
        const int prio = current_priority() == priority::realtime ? 1 : 0;
        const auto t0 = clock::now();
        for (;;) {
            std::vector<txn_op> ops = then;
            if (wkey) ops.push_back(txn_op::erase(*wkey));
            auto r = c.txn(when, ops, {txn_op::range(guards_, guards_end_)});
            if (r.succeeded) {
                if (wkey) {
                    wkey.reset();  // deleted by the write itself (invariant 2)
                    r.deleted.pop_back();
                }
                if (waited) {
                    n_waited.fetch_add(1);
                    m_wait[static_cast<int>(lock_role::writer)][prio].record_shared(clock::now() - t0);
                } else {
                    m_write_zero_waits[prio].fetch_add(1, std::memory_order_relaxed);
                }
                return {true, r.revision, std::move(r)};
            }
            const auto& guards = r.ranges.at(0).kvs;
            if (guards.empty()) return {false, r.revision, std::move(r)};  // the caller's compare failed
            waited = true;
            if (!wkey || !wsession || wsession->expired.load() || !wsession->alive()) {
                if (wkey) {
                    try {
                        c.erase(*wkey);
                    } catch (...) {
                    }
                    wkey.reset();
                }
                wsession = live_session();
                const std::string k = (current_priority() == priority::realtime ? rt_ : be_) +
                                      hex(wsession->lease) + "/" + hex(static_cast<std::int64_t>(seq++));
                c.put(k, {}, wsession->lease);
                wkey = k;
            }
            std::int64_t max_create = 0;
            for (const auto& kv : guards) max_create = std::max(max_create, kv.create_revision);
            if (!wait_view(
                    max_create, [&] { return !view_has(guards_, guards_end_, 0); }, deadline))
                throw error(errc::deadline, "etcd::iteration_lock: a write waited longer than write_wait (" +
                                                std::to_string(opts.write_wait.count()) +
                                                " ms) for iteration guards to end; nothing was written");
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
