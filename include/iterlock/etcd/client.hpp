// iterlock/etcd/client.hpp: a small etcd v3 client over etcd's gRPC API (KV, Watch, Lease, Auth,
// Maintenance), the transport under iterlock::etcd::map.
//
// Owns: client_options, the plain result types (key_value, range_result, ...), client, watch_stream.
// gRPC and protobuf stay behind a pimpl: this header includes neither, so a program that includes it needs
// only to link iterlock::etcd.
//
// What each call guarantees
// -------------------------
//   C1  Every call has a deadline: options.call_timeout from the call's start, covering every attempt.
//   C2  Endpoints: calls go to one endpoint at a time (the current one); an endpoint that cannot be
//       connected to within options.connect_timeout, or answers "unavailable" before the request was sent,
//       is skipped for the next one, round robin (counted in metrics().failovers).
//   C3  Retries only where safe. Reads (range, status) are retried on another endpoint after a transport
//       failure, up to options.read_attempts attempts, each bounded by options.attempt_timeout. A write
//       (put, erase, txn, compact, lease calls) is sent once: if the connection fails before it is sent it
//       moves to another endpoint (nothing was sent); if anything fails after it was sent the call throws
//       errc::may_have_applied (error.hpp, E2). Requests etcd rejected before applying them ("no leader",
//       an expired auth token) are retried like reads.
//   C4  Reads are linearizable unless range_options::serializable is set (then the endpoint's local copy,
//       possibly stale, is read).
//   C5  Auth: with options.user set, the client authenticates once per endpoint and sends the token with
//       every call; an expired token is renewed once per call. TLS: options.tls set makes every channel
//       a TLS channel (gRPC SSL credentials) with the given CA and optional client certificate.
//   C6  Thread safety: a client may be used by any number of threads at once. A watch_stream is used by
//       one reading thread; request_progress() and cancel() may be called from any thread.
// Complexity: one round trip per call (and per attempt); a range returns everything it matched in one
// message (the client accepts messages of any size; etcd's own limit applies to requests, 1.5 MiB).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "iterlock/etcd/error.hpp"

namespace iterlock::etcd {

struct tls_options {
    std::string ca_pem;    // trusted roots (empty: gRPC's default roots)
    std::string cert_pem;  // client certificate (empty: none)
    std::string key_pem;   // its private key
};

struct client_options {
    std::vector<std::string> endpoints;            // "host:port" (an http:// or https:// prefix is dropped)
    std::chrono::milliseconds call_timeout{5000};  // C1
    std::chrono::milliseconds attempt_timeout{2000};    // C3, one read attempt
    std::chrono::milliseconds connect_timeout{1000};    // C2
    int read_attempts = 3;                              // C3
    std::string user, password;                         // C5 (empty user: no auth)
    std::optional<tls_options> tls;                     // C5
    std::size_t max_request_bytes = 1536 * 1024 + 512;  // etcd's --max-request-bytes plus gRPC overhead
};

struct key_value {
    std::string key, value;
    std::int64_t create_revision = 0, mod_revision = 0, version = 0, lease = 0;
};

struct range_options {
    std::string range_end;      // empty: the key alone; prefix_end(p): every key starting with p
    std::int64_t revision = 0;  // 0: the latest
    std::int64_t limit = 0;     // 0: no limit
    bool serializable = false;  // C4
    bool keys_only = false;
    bool count_only = false;
};

struct range_result {
    std::vector<key_value> kvs;
    bool more = false;          // a limit cut the result
    std::int64_t count = 0;     // keys matched
    std::int64_t revision = 0;  // the store revision the range was read at
};

struct delete_result {
    std::int64_t deleted = 0;
    std::int64_t revision = 0;  // the store revision after the delete
};

// One comparison of a transaction: key's `target` compared with `number` (or `value`). With range_end set
// (etcd >= 3.3) it holds when it holds for every key in [key, range_end); over a range with no key it
// compares a key that does not exist (create_revision 0, version 0), so {range, create_revision, equal, 0}
// reads "no key in the range".
struct compare {
    enum class target { version, create_revision, mod_revision, value };
    enum class op { equal, greater, less, not_equal };
    std::string key;
    target what = target::mod_revision;
    op how = op::equal;
    std::int64_t number = 0;
    std::string value;
    std::string range_end;  // empty: the key alone
};

// One operation of a transaction.
struct txn_op {
    enum class kind { put, erase, range };
    kind what = kind::put;
    std::string key, value, range_end;
    std::int64_t lease = 0;
    static txn_op put(std::string k, std::string v, std::int64_t lease = 0) {
        return {kind::put, std::move(k), std::move(v), {}, lease};
    }
    static txn_op erase(std::string k, std::string end = {}) {
        return {kind::erase, std::move(k), {}, std::move(end), 0};
    }
    static txn_op range(std::string k, std::string end = {}) {
        return {kind::range, std::move(k), {}, std::move(end), 0};
    }
};

struct txn_result {
    bool succeeded = false;
    std::int64_t revision = 0;          // the store revision after the transaction (its own if it wrote)
    std::vector<range_result> ranges;   // one per range op of the branch that ran, in order
    std::vector<std::int64_t> deleted;  // one per erase op of the branch that ran, in order
};

struct lease_grant_result {
    std::int64_t id = 0;
    std::int64_t ttl_s = 0;
};

struct status_result {
    std::uint64_t member_id = 0, leader = 0;
    std::int64_t revision = 0, raft_term = 0;
};

struct event {
    enum class kind { put, erase };
    kind what = kind::put;
    key_value kv;  // for erase: key and mod_revision (the delete's revision)
};

struct watch_batch {
    std::vector<event> events;
    std::int64_t header_revision = 0;
    std::int64_t compact_revision = 0;  // > 0: the start revision was compacted; the watch is canceled
    bool created = false, canceled = false;
    std::string cancel_reason;
};

struct watch_options {
    std::string key, range_end;
    std::int64_t start_revision = 0;  // 0: from now
    bool progress_notify = false;
};

// A watch: one gRPC stream to one endpoint. It does not reconnect: when its endpoint fails next() throws
// or returns false and the owner opens a new one from the revision after the last it applied.
class watch_stream {
  public:
    struct impl;
    explicit watch_stream(std::unique_ptr<impl> p);
    ~watch_stream();
    watch_stream(const watch_stream&) = delete;
    watch_stream& operator=(const watch_stream&) = delete;
    // Blocks for the next response. false: the stream ended (cancel() or the server closed it).
    // Throws error(unavailable) when the connection failed.
    bool next(watch_batch& out);
    // Asks etcd for a progress response (a batch with no events whose header_revision says all events up
    // to it were sent). Any thread.
    void request_progress();
    // Ends the stream; a next() blocked in another thread returns false. Any thread, idempotent.
    void cancel();
    const std::string& endpoint() const;

  private:
    std::unique_ptr<impl> p_;
};

struct client_metrics {
    std::uint64_t round_trips = 0;  // requests sent (attempts), watches opened included
    std::uint64_t retries = 0;      // attempts after the first (C3)
    std::uint64_t failovers = 0;    // moves to another endpoint (C2): the "reconnects"
    std::uint64_t may_have_applied = 0;
};

// The end of the key range holding every key that starts with `prefix` (etcd's "prefix end").
std::string prefix_end(const std::string& prefix);

class client {
  public:
    explicit client(client_options options);
    ~client();
    client(const client&) = delete;
    client& operator=(const client&) = delete;

    // Writes (C3: sent once). Return the revision etcd committed them at.
    std::int64_t put(const std::string& key, const std::string& value, std::int64_t lease = 0);
    delete_result erase(const std::string& key, const std::string& range_end = {});
    txn_result txn(const std::vector<compare>& when, const std::vector<txn_op>& then,
                   const std::vector<txn_op>& otherwise = {});
    // Compacts the history before `revision` (physical: waits until the space is freed).
    void compact(std::int64_t revision, bool physical = false);

    // Reads (C3: retried).
    range_result range(const std::string& key, const range_options& o = {});
    std::optional<key_value> get(const std::string& key);
    // One endpoint's view (member id, leader, revision); no failover: for fault tests and tools.
    status_result status(const std::string& endpoint);

    // Leases.
    lease_grant_result lease_grant(std::int64_t ttl_s);
    void lease_revoke(std::int64_t id);
    // One keep-alive of lease `id` (a LeaseKeepAlive stream opened for one request; retried like a read,
    // since renewing twice is harmless). Returns the TTL etcd granted, in seconds; <= 0: the lease is gone.
    std::int64_t lease_keep_alive(std::int64_t id);

    // A new watch on the current endpoint (failing over while none can be connected, C2).
    std::unique_ptr<watch_stream> watch(const watch_options& o);

    const client_options& options() const noexcept;
    client_metrics metrics() const noexcept;

    struct impl;

  private:
    std::unique_ptr<impl> p_;
};

}  // namespace iterlock::etcd
