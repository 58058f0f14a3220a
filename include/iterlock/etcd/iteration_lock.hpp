// iterlock/etcd/iteration_lock.hpp: the iteration lock across processes, on etcd (the locked policy of
// iterlock::etcd::map; the seed's mapIteratorLock lifted to many processes).
//
// Owns: iterlock::etcd::iteration_lock, its RAII iteration_guard, lock_options, and the policy tags
// snapshot_iteration / locked_iteration that etcd::map takes as its fourth template argument.
//
// Why a policy and not lock_for_iteration() on every etcd::map. The lock changes every write: under it a
// write is a transaction that compares "no guard key exists" (D-L1), where the plain map sends a bare Put.
// Every process writing the prefix must take part, or its writes slip past the guards. As a type,
// map<K, V, Codec, locked_iteration>, a process cannot write the prefix around the lock by mistake, and the
// default snapshot map pays nothing (its writes stay bare Puts, D1 unchanged). A lock_for_iteration() on
// every map would have made every write pay the gate, or let ungated writes through. (docs/ETCD.md, "The
// iteration lock across processes".)
//
// Keys (under lock_options::prefix, L):
//     L i/<lease>/<n>        a held guard: created by the txn that took it, on the process's lease. Its
//                            create_revision H is the guard's fence.
//     L w/r/<lease>/<n>      a writer waiting, realtime      (only while a guard blocks it)
//     L w/b/<lease>/<n>      a writer waiting, best_effort
// A walker waiting puts no key: its place in the queue is the revision Q of its first refused attempt.
// Each process keeps a local view of L (list-then-watch, detail/mirror_core.hpp) and retries only when the
// view shows its condition met; the view decides nothing on its own: every decision is a compare in etcd.
//
// Rules. The in-process lock's L1-L7 (iterlock/iteration_lock.hpp), for processes:
//   D-L1  Exclusion. While a guard is held by any process, no write by another holder or any non-holder
//         takes effect: every gated write is one Txn whose compare is "no key in L i/" (a range compare,
//         etcd >= 3.3); on failure the writer waits for the view to empty and retries. No write takes a
//         distributed lock when no guard is held: one round trip, as a plain Put.
//         Hand-off: a waiting writer whose write is one put without compares of its own
//         (insert_or_assign) registers that put with its key; the release of the last guard applies it in
//         its own Txn, at the revision where the guard goes, so the writer's return costs no round trip
//         of its own. Each such put lands exactly once (the releaser and the writer both compare the
//         registration key, which either deletes).
//   D-L2  Shared walks. Any number of guards, on any processes, may be held at once.
//   D-L3  Writer preference. A writer refused by a guard registers L w/... (create revision w); a walker
//         whose first attempt came after w (Q > w) is not let in until that key is gone. Walkers queued
//         before w keep their turn: guards are granted in etcd's revision order.
//   D-L4  Priorities. A realtime walker ignores waiting best_effort writers (it goes first); a best_effort
//         walker yields to every waiting realtime writer, whenever it queued. Writers register with the
//         priority current_priority() of their thread.
//   D-L5  try_lock_for_iteration(timeout) returns a guard that tests false and leaves no key (a waiting
//         walker has none); a guard whose process dies leaves one key, on its lease.
//   D-L6  Leases. Guards and waiting writers live on the process's lease (lock_options::ttl). Keep-alives
//         run every ttl/3. If the lease expires (process dead or stalled past the TTL), etcd deletes the
//         keys and writers proceed. The stale holder's next step (check(), for_each's next page, a write)
//         throws error(lease_expired): locally once ttl passed since the last keep-alive that was sent
//         before its answer; in etcd because a holder's write compares its guard key's create_revision
//         (the fence H), so a fenced write of an expired guard never lands.
//   D-L7  The thread holding the only live guard may write (iterate-and-expire): its writes are fenced by
//         its key (D-L6) and compare "no other guard key". With another guard live (here or elsewhere) such
//         a write throws iterlock::lock_error and changes nothing (L6). Nested guards on one thread share
//         the first one's key (L7).
//
// Guarantees per call. lock_for_iteration(): one Txn uncontended (plus a LeaseGrant the first time and
// after an expiry); blocks while writers wait (D-L3/D-L4); throws etcd::error when etcd cannot be reached.
// Releasing a guard: one Txn (a delete compared on the fence; the last guard's also carries the waiting
// puts its process's view shows, at most 32 and 512 KiB, else a second, plain one follows); never throws
// (a failed delete leaves the key to its lease). write(): one Txn while no guard is held; otherwise waits
// per D-L1 (bounded by lock_options::write_wait, then error(deadline), no key left, nothing written).
// Faults: a write whose answer was lost throws error(may_have_applied) as any write (client.hpp C3), and
// so does a waiting put that a release may have applied when etcd failed or its lease lapsed; a waiting
// writer's key is deleted on every way out. Thread safety: any member from any thread; a guard ends on
// the thread that took it.
//
// Metrics. metrics() returns the in-process lock's map_metrics (policy "locked"), so iterlock/prometheus.hpp
// exports it like any map: expose(registry, m.lock(), "sessions", {{"backend", "etcd"}}) gives
//   iterlock_locked_iterations_total{state}       guards released (success), timed out, failed (error:
//                                                 the acquisition threw, or the guard ended on an expired
//                                                 lease)
//   iterlock_lock_wait_seconds{role,priority}     writers: how long gated writes waited (zero when none);
//                                                 iterator: guard acquisitions, the Txn included
//   iterlock_iteration_hold_seconds{priority}     how long guards were held
//   iterlock_misuse_detected_total                fenced writes refused by another live guard (D-L7)
// with the same names as the in-process backends, so one dashboard covers both. The lock must outlive
// its exposure.
//
// FAQ
//   Why does a waiting walker not queue a key? A key would block writers (they compare "no key in i/"),
//   and a key outside i/ would cost a write per wait. Its queue place is a revision, which costs nothing.
//   Why not etcd's concurrency.Mutex per write? One round trip per write instead of three, and no
//   100 ms cliff: nobody opens a watch at a past revision (the view's one watch is opened once).
//   Does a guard see the live data? Its fence H is a revision at which no other write can land while it is
//   held: reading the prefix at H (map::for_each) is the live data, less the holder's own writes.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "iterlock/etcd/client.hpp"
#include "iterlock/etcd/error.hpp"
#include "iterlock/metrics.hpp"
#include "iterlock/priority.hpp"

namespace iterlock::etcd {

// Policy tags of etcd::map (map.hpp): snapshots of the mirror (the default), or the lock above.
struct snapshot_iteration {
    static constexpr bool locked = false;
};
struct locked_iteration {
    static constexpr bool locked = true;
};

struct lock_options {
    std::string prefix;                       // L; empty: "iterlock-lock:" + the map's prefix
    std::chrono::seconds ttl{5};              // D-L6, the lease's TTL
    std::chrono::milliseconds write_wait{0};  // D-L1: how long a write waits for guards; 0: no limit
    std::chrono::milliseconds keep_alive{0};  // between keep-alives; 0: ttl / 3
};

// What this process's view of L holds now (tests, debugging).
struct lock_view_state {
    std::size_t guards = 0, writers_realtime = 0, writers_best_effort = 0;
    std::int64_t revision = 0;  // the view is L's content as of this revision
};

struct lock_counters {
    std::uint64_t guards = 0, guard_timeouts = 0, guard_waits = 0;  // acquisitions; timeouts; that waited
    std::uint64_t guard_refusals = 0;                               // attempts refused (D-L3, D-L4)
    std::uint64_t writes_gated = 0, writes_waited = 0, writes_fenced = 0, lease_expiries = 0;
    std::uint64_t writes_handed_off = 0;  // waited writes that a guard's release applied (D-L1 hand-off)
    std::uint64_t handoffs_applied = 0;   // releases of this process that applied waiting writes
};

class iteration_lock;

namespace detail {
struct lock_session;
struct lock_hold;
}  // namespace detail

// RAII holder of an iteration across processes. Movable (it owns a key in etcd, not a thread's slot), but
// it must end on the thread that took it when that thread wrote through it (D-L7 uses the thread's hold).
class iteration_guard {
  public:
    iteration_guard() = default;
    ~iteration_guard() { release(); }
    iteration_guard(iteration_guard&& o) noexcept : lock_(o.lock_), hold_(std::move(o.hold_)) {
        o.lock_ = nullptr;
    }
    iteration_guard& operator=(iteration_guard&& o) noexcept {
        if (this != &o) {
            release();
            lock_ = o.lock_;
            hold_ = std::move(o.hold_);
            o.lock_ = nullptr;
        }
        return *this;
    }
    iteration_guard(const iteration_guard&) = delete;
    iteration_guard& operator=(const iteration_guard&) = delete;

    bool owns_lock() const noexcept { return lock_ != nullptr; }
    explicit operator bool() const noexcept { return owns_lock(); }
    // The fence H: the create revision of the guard's key. 0 when it owns nothing.
    std::int64_t revision() const noexcept;
    // The revision its first refused attempt was made at (its place in the queue, D-L3); revision() when it
    // was let in at once.
    std::int64_t queued_revision() const noexcept;
    // D-L6: throws error(lease_expired) when the guard's lease is (or may be) gone. Local: no round trip.
    void check() const;
    // Ends the guard now (deletes its key); idempotent; never throws.
    void release() noexcept;

  private:
    friend class iteration_lock;
    iteration_lock* lock_ = nullptr;
    std::shared_ptr<detail::lock_hold> hold_;
};

class iteration_lock {
  public:
    // Lists L and starts watching it (throws what the list throws). `prefix` is L (non-empty).
    iteration_lock(client& c, lock_options o);
    ~iteration_lock();  // revokes the lease: every key of this process goes at once
    iteration_lock(const iteration_lock&) = delete;
    iteration_lock& operator=(const iteration_lock&) = delete;

    // A guard (D-L1..D-L7) with the caller's current_priority(); waits without limit.
    iteration_guard lock_for_iteration();
    // D-L5: a guard that tests false, leaving no key, if none could be had within `timeout`.
    iteration_guard try_lock_for_iteration(std::chrono::milliseconds timeout);
    // Whether the calling thread holds a guard of this lock.
    bool held_for_iteration() const noexcept;

    struct write_result {
        bool succeeded = false;     // the caller's compares held (always true without any)
        std::int64_t revision = 0;  // the write's revision when it succeeded, etcd's then-current one else
        txn_result txn;             // the transaction's result (ranges and deletes of `then`)
    };
    // A gated write (D-L1): `then` runs iff no guard is held, or, on a thread holding the only live guard,
    // fenced by it (D-L6, D-L7); and `when` (the caller's compares) hold. Blocks while other guards are held.
    // Throws error(lease_expired) (fenced, lease gone), lock_error (fenced, another guard live),
    // error(deadline) (lock_options::write_wait passed), or what the client throws.
    write_result write(const std::vector<compare>& when, const std::vector<txn_op>& then);

    lock_view_state view_state() const;
    lock_counters counters() const noexcept;
    // See "Metrics" above. Relaxed loads, never blocks; allocates (histograms).
    map_metrics metrics() const;
    const std::string& prefix() const noexcept;
    // The lease this process's keys live on now (0: none granted yet). Tests.
    std::int64_t lease_id() const;

    struct impl;

  private:
    friend class iteration_guard;
    std::unique_ptr<impl> p_;
};

}  // namespace iterlock::etcd
