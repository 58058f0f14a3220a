// iterlock::etcd::client over gRPC: channels per endpoint, the call loop that applies the deadline,
// failover and retry rules (client.hpp, C1-C5), and the translation of gRPC/etcd failures into errc codes.
//
// Invariant: a write is sent at most once per call. The only retry of a write is after its endpoint
// refused the connection (WaitForConnected failed: no byte of the request left) or etcd answered with an
// error it returns before proposing (no leader, stale auth token).
#include "iterlock/etcd/client.hpp"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <string_view>

#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"

namespace iterlock::etcd {

namespace pb = etcdserverpb;
using clock = std::chrono::steady_clock;

std::string prefix_end(const std::string& prefix) {
    std::string end = prefix;
    while (!end.empty()) {
        if (static_cast<unsigned char>(end.back()) < 0xff) {
            end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
            return end;
        }
        end.pop_back();
    }
    return std::string(1, '\0');  // every key
}

namespace {

std::string strip_scheme(std::string e) {
    for (std::string_view s : {"http://", "https://"})
        if (e.rfind(s, 0) == 0) e.erase(0, s.size());
    return e;
}

key_value to_kv(const mvccpb::KeyValue& k) {
    return {k.key(), k.value(), k.create_revision(), k.mod_revision(), k.version(), k.lease()};
}

range_result to_range(const pb::RangeResponse& r) {
    range_result out;
    out.kvs.reserve(static_cast<std::size_t>(r.kvs_size()));
    for (const auto& k : r.kvs()) out.kvs.push_back(to_kv(k));
    out.more = r.more();
    out.count = r.count();
    out.revision = r.header().revision();
    return out;
}

// gRPC takes system_clock deadlines; the client measures with steady_clock.
std::chrono::system_clock::time_point sys(clock::time_point t) {
    return std::chrono::system_clock::now() +
           std::chrono::duration_cast<std::chrono::system_clock::duration>(t - clock::now());
}

bool contains(const std::string& s, std::string_view what) {
    return s.find(what) != std::string::npos;
}

// Errors etcd returns before a request is proposed: safe to retry, on another member.
bool rejected_before_apply(const grpc::Status& st) {
    const auto& m = st.error_message();
    return contains(m, "no leader") || contains(m, "not capable") || contains(m, "leader changed") ||
           contains(m, "too many requests");
}
bool auth_token_stale(const grpc::Status& st) {
    return contains(st.error_message(), "invalid auth token") ||
           contains(st.error_message(), "user name is empty");
}

}  // namespace

struct endpoint_state {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<pb::KV::Stub> kv;
    std::unique_ptr<pb::Watch::Stub> watch;
    std::unique_ptr<pb::Lease::Stub> lease;
    std::unique_ptr<pb::Auth::Stub> auth;
    std::unique_ptr<pb::Maintenance::Stub> maintenance;
    std::mutex token_mu;
    std::string token;  // guarded by token_mu
};

struct client::impl {
    client_options opts;
    std::vector<std::unique_ptr<endpoint_state>> eps;
    std::atomic<std::size_t> current{0};
    std::atomic<std::uint64_t> round_trips{0}, retries{0}, failovers{0}, may_have_applied{0};

    explicit impl(client_options o) : opts(std::move(o)) {
        if (opts.endpoints.empty()) throw error(errc::invalid_argument, "etcd::client: no endpoints given");
        std::shared_ptr<grpc::ChannelCredentials> creds;
        if (opts.tls) {
            grpc::SslCredentialsOptions s;
            s.pem_root_certs = opts.tls->ca_pem;
            s.pem_cert_chain = opts.tls->cert_pem;
            s.pem_private_key = opts.tls->key_pem;
            creds = grpc::SslCredentials(s);
        } else {
            creds = grpc::InsecureChannelCredentials();
        }
        for (const auto& e : opts.endpoints) {
            grpc::ChannelArguments args;
            args.SetMaxReceiveMessageSize(-1);
            args.SetMaxSendMessageSize(-1);
            // Reconnect fast after a member restarts (gRPC's default backoff grows to two minutes).
            args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
            // (GRPC_ARG_MIN_RECONNECT_BACKOFF_MS is also the connect timeout: left at its default.)
            args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
            // Notice a silent peer on a long-lived watch (etcd allows pings every 5 s by default).
            args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10'000);
            args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 3'000);
            args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
            // One connection per endpoint state: channels to the same address must not share a subchannel,
            // so that a failover really leaves the failed connection.
            args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
            auto ep = std::make_unique<endpoint_state>();
            ep->address = strip_scheme(e);
            ep->channel = grpc::CreateCustomChannel(ep->address, creds, args);
            ep->kv = pb::KV::NewStub(ep->channel);
            ep->watch = pb::Watch::NewStub(ep->channel);
            ep->lease = pb::Lease::NewStub(ep->channel);
            ep->auth = pb::Auth::NewStub(ep->channel);
            ep->maintenance = pb::Maintenance::NewStub(ep->channel);
            eps.push_back(std::move(ep));
        }
    }

    void failover(std::size_t from) {
        std::size_t expected = from;
        if (current.compare_exchange_strong(expected, (from + 1) % eps.size())) failovers.fetch_add(1);
    }

    // The auth token of `ep` (authenticating first when needed); empty without auth.
    std::string token(endpoint_state& ep, clock::time_point deadline, bool renew) {
        if (opts.user.empty()) return {};
        std::lock_guard<std::mutex> g(ep.token_mu);
        if (!ep.token.empty() && !renew) return ep.token;
        pb::AuthenticateRequest req;
        req.set_name(opts.user);
        req.set_password(opts.password);
        pb::AuthenticateResponse resp;
        grpc::ClientContext ctx;
        ctx.set_deadline(sys(deadline));
        round_trips.fetch_add(1);
        auto st = ep.auth->Authenticate(&ctx, req, &resp);
        if (!st.ok()) {
            if (st.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
                st.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
                st.error_code() == grpc::StatusCode::FAILED_PRECONDITION)
                throw error(errc::auth_failed,
                            "etcd authenticate at " + ep.address + ": " + st.error_message());
            throw error(errc::unavailable, "etcd authenticate at " + ep.address + ": " + st.error_message());
        }
        ep.token = resp.token();
        return ep.token;
    }

    [[noreturn]] void throw_status(const char* what, const endpoint_state& ep, const grpc::Status& st,
                                   bool sent_write) {
        const std::string msg = std::string("etcd ") + what + " at " + ep.address + ": " +
                                st.error_message() + " (gRPC code " +
                                std::to_string(static_cast<int>(st.error_code())) + ")";
        const auto& m = st.error_message();
        if (contains(m, "required revision has been compacted")) throw error(errc::compacted, msg);
        if (contains(m, "future revision")) throw error(errc::future_revision, msg);
        if (contains(m, "request is too large") || st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED)
            throw error(errc::too_large, msg);
        if (st.error_code() == grpc::StatusCode::PERMISSION_DENIED) throw error(errc::permission_denied, msg);
        if (st.error_code() == grpc::StatusCode::UNAUTHENTICATED || contains(m, "authentication failed"))
            throw error(errc::auth_failed, msg);
        if (st.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
            st.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
            st.error_code() == grpc::StatusCode::OUT_OF_RANGE)
            throw error(errc::invalid_argument, msg);
        if (sent_write && !rejected_before_apply(st)) {
            may_have_applied.fetch_add(1);
            throw error(errc::may_have_applied,
                        msg + "; the write may have been applied: read it back before retrying");
        }
        if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) throw error(errc::deadline, msg);
        if (st.error_code() == grpc::StatusCode::UNAVAILABLE || rejected_before_apply(st))
            throw error(errc::unavailable, msg);
        throw error(errc::internal, msg);
    }

    enum class kind { read, write };

    // The call loop (C1-C3). `invoke(ep, ctx)` makes the call and returns its status.
    template <class Invoke>
    void call(const char* what, kind k, Invoke&& invoke) {
        const auto start = clock::now();
        const auto deadline = start + opts.call_timeout;
        const int max_attempts =
            std::max<int>(k == kind::read ? opts.read_attempts : 1, 1) + static_cast<int>(eps.size());
        bool renewed = false;
        for (int attempt = 0;; ++attempt) {
            if (attempt > 0) retries.fetch_add(1);
            const std::size_t idx = current.load() % eps.size();
            endpoint_state& ep = *eps[idx];
            const auto now = clock::now();
            if (now >= deadline)
                throw error(errc::deadline,
                            std::string("etcd ") + what + ": deadline passed before a member answered");
            // C2: not connected in time, nothing sent: the next endpoint.
            if (!ep.channel->WaitForConnected(sys(std::min(deadline, now + opts.connect_timeout)))) {
                failover(idx);
                if (attempt + 1 >= max_attempts)
                    throw error(errc::unavailable,
                                std::string("etcd ") + what + ": no endpoint could be connected");
                continue;
            }
            grpc::ClientContext ctx;
            auto attempt_deadline = deadline;
            if (k == kind::read) attempt_deadline = std::min(deadline, clock::now() + opts.attempt_timeout);
            ctx.set_deadline(sys(attempt_deadline));
            const std::string tok = token(ep, deadline, renewed);
            if (!tok.empty()) ctx.AddMetadata("token", tok);
            round_trips.fetch_add(1);
            grpc::Status st = invoke(ep, ctx);
            if (st.ok()) return;
            if (auth_token_stale(st) && !renewed && !opts.user.empty()) {
                renewed = true;  // rejected before apply: renew the token once and send again
                continue;
            }
            const bool transport = st.error_code() == grpc::StatusCode::UNAVAILABLE ||
                                   st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
            const bool may_retry = (k == kind::read && transport) || rejected_before_apply(st);
            if (may_retry && attempt + 1 < max_attempts && clock::now() < deadline) {
                failover(idx);
                continue;
            }
            if (transport && k == kind::read) failover(idx);
            throw_status(what, ep, st, k == kind::write);
        }
    }
};

// ---------------------------------------------------------------------------------------------------

client::client(client_options options) : p_(std::make_unique<impl>(std::move(options))) {}
client::~client() = default;
const client_options& client::options() const noexcept {
    return p_->opts;
}

client_metrics client::metrics() const noexcept {
    return {p_->round_trips.load(), p_->retries.load(), p_->failovers.load(), p_->may_have_applied.load()};
}

namespace {
void check_size(const client_options& o, std::size_t bytes, const char* what) {
    if (bytes > o.max_request_bytes)
        throw error(errc::too_large, std::string("etcd ") + what + ": request of " + std::to_string(bytes) +
                                         " bytes exceeds the request limit of " +
                                         std::to_string(o.max_request_bytes) + " bytes; nothing was sent");
}
}  // namespace

std::int64_t client::put(const std::string& key, const std::string& value, std::int64_t lease) {
    pb::PutRequest req;
    req.set_key(key);
    req.set_value(value);
    req.set_lease(lease);
    check_size(p_->opts, req.ByteSizeLong(), "put");
    pb::PutResponse resp;
    p_->call("put", impl::kind::write,
             [&](endpoint_state& ep, grpc::ClientContext& ctx) { return ep.kv->Put(&ctx, req, &resp); });
    return resp.header().revision();
}

delete_result client::erase(const std::string& key, const std::string& range_end) {
    pb::DeleteRangeRequest req;
    req.set_key(key);
    req.set_range_end(range_end);
    pb::DeleteRangeResponse resp;
    p_->call("delete", impl::kind::write, [&](endpoint_state& ep, grpc::ClientContext& ctx) {
        return ep.kv->DeleteRange(&ctx, req, &resp);
    });
    return {resp.deleted(), resp.header().revision()};
}

namespace {
void fill_op(pb::RequestOp* op, const txn_op& o) {
    switch (o.what) {
        case txn_op::kind::put: {
            auto* p = op->mutable_request_put();
            p->set_key(o.key);
            p->set_value(o.value);
            p->set_lease(o.lease);
            break;
        }
        case txn_op::kind::erase: {
            auto* d = op->mutable_request_delete_range();
            d->set_key(o.key);
            d->set_range_end(o.range_end);
            break;
        }
        case txn_op::kind::range: {
            auto* r = op->mutable_request_range();
            r->set_key(o.key);
            r->set_range_end(o.range_end);
            break;
        }
    }
}
}  // namespace

txn_result client::txn(const std::vector<compare>& when, const std::vector<txn_op>& then,
                       const std::vector<txn_op>& otherwise) {
    pb::TxnRequest req;
    for (const auto& c : when) {
        auto* pc = req.add_compare();
        pc->set_key(c.key);
        if (!c.range_end.empty()) pc->set_range_end(c.range_end);
        switch (c.how) {
            case compare::op::equal:
                pc->set_result(pb::Compare::EQUAL);
                break;
            case compare::op::greater:
                pc->set_result(pb::Compare::GREATER);
                break;
            case compare::op::less:
                pc->set_result(pb::Compare::LESS);
                break;
            case compare::op::not_equal:
                pc->set_result(pb::Compare::NOT_EQUAL);
                break;
        }
        switch (c.what) {
            case compare::target::version:
                pc->set_target(pb::Compare::VERSION);
                pc->set_version(c.number);
                break;
            case compare::target::create_revision:
                pc->set_target(pb::Compare::CREATE);
                pc->set_create_revision(c.number);
                break;
            case compare::target::mod_revision:
                pc->set_target(pb::Compare::MOD);
                pc->set_mod_revision(c.number);
                break;
            case compare::target::value:
                pc->set_target(pb::Compare::VALUE);
                pc->set_value(c.value);
                break;
        }
    }
    for (const auto& o : then) fill_op(req.add_success(), o);
    for (const auto& o : otherwise) fill_op(req.add_failure(), o);
    check_size(p_->opts, req.ByteSizeLong(), "txn");
    pb::TxnResponse resp;
    p_->call("txn", impl::kind::write,
             [&](endpoint_state& ep, grpc::ClientContext& ctx) { return ep.kv->Txn(&ctx, req, &resp); });
    txn_result out;
    out.succeeded = resp.succeeded();
    out.revision = resp.header().revision();
    for (const auto& r : resp.responses()) {
        if (r.has_response_range()) out.ranges.push_back(to_range(r.response_range()));
        if (r.has_response_delete_range()) out.deleted.push_back(r.response_delete_range().deleted());
    }
    return out;
}

void client::compact(std::int64_t revision, bool physical) {
    pb::CompactionRequest req;
    req.set_revision(revision);
    req.set_physical(physical);
    pb::CompactionResponse resp;
    p_->call("compact", impl::kind::write,
             [&](endpoint_state& ep, grpc::ClientContext& ctx) { return ep.kv->Compact(&ctx, req, &resp); });
}

range_result client::range(const std::string& key, const range_options& o) {
    pb::RangeRequest req;
    req.set_key(key);
    req.set_range_end(o.range_end);
    req.set_revision(o.revision);
    req.set_limit(o.limit);
    req.set_serializable(o.serializable);
    req.set_keys_only(o.keys_only);
    req.set_count_only(o.count_only);
    pb::RangeResponse resp;
    p_->call("range", impl::kind::read,
             [&](endpoint_state& ep, grpc::ClientContext& ctx) { return ep.kv->Range(&ctx, req, &resp); });
    return to_range(resp);
}

std::optional<key_value> client::get(const std::string& key) {
    auto r = range(key);
    if (r.kvs.empty()) return std::nullopt;
    return std::move(r.kvs.front());
}

status_result client::status(const std::string& endpoint) {
    const auto addr = strip_scheme(endpoint);
    for (auto& ep : p_->eps) {
        if (ep->address != addr) continue;
        pb::StatusRequest req;
        pb::StatusResponse resp;
        grpc::ClientContext ctx;
        ctx.set_deadline(sys(clock::now() + p_->opts.attempt_timeout));
        ctx.set_wait_for_ready(true);  // through a reconnect, within the deadline
        p_->round_trips.fetch_add(1);
        auto st = ep->maintenance->Status(&ctx, req, &resp);
        if (!st.ok()) p_->throw_status("status", *ep, st, false);
        return {resp.header().member_id(), resp.leader(), resp.header().revision(),
                static_cast<std::int64_t>(resp.raftterm())};
    }
    throw error(errc::invalid_argument, "etcd status: " + endpoint + " is not one of the client's endpoints");
}

lease_grant_result client::lease_grant(std::int64_t ttl_s) {
    pb::LeaseGrantRequest req;
    req.set_ttl(ttl_s);
    pb::LeaseGrantResponse resp;
    p_->call("lease grant", impl::kind::write, [&](endpoint_state& ep, grpc::ClientContext& ctx) {
        return ep.lease->LeaseGrant(&ctx, req, &resp);
    });
    if (!resp.error().empty()) throw error(errc::internal, "etcd lease grant: " + resp.error());
    return {resp.id(), resp.ttl()};
}

void client::lease_revoke(std::int64_t id) {
    pb::LeaseRevokeRequest req;
    req.set_id(id);
    pb::LeaseRevokeResponse resp;
    p_->call("lease revoke", impl::kind::write, [&](endpoint_state& ep, grpc::ClientContext& ctx) {
        return ep.lease->LeaseRevoke(&ctx, req, &resp);
    });
}

std::int64_t client::lease_keep_alive(std::int64_t id) {
    pb::LeaseKeepAliveRequest req;
    req.set_id(id);
    pb::LeaseKeepAliveResponse resp;
    p_->call("lease keep-alive", impl::kind::read, [&](endpoint_state& ep, grpc::ClientContext& ctx) {
        auto rw = ep.lease->LeaseKeepAlive(&ctx);
        const bool sent = rw->Write(req);
        const bool got = sent && rw->Read(&resp);
        if (sent) rw->WritesDone();
        if (!got) ctx.TryCancel();
        pb::LeaseKeepAliveResponse rest;
        while (got && rw->Read(&rest)) {
        }
        grpc::Status st = rw->Finish();
        if (got) return grpc::Status::OK;
        return st.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "keep-alive stream ended") : st;
    });
    return resp.ttl();
}

// ---------------------------------------------------------------------------------------------------
// watch_stream

struct watch_stream::impl {
    std::string address;
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReaderWriter<pb::WatchRequest, pb::WatchResponse>> rw;
    std::mutex write_mu;  // gRPC allows one writer at a time beside the reader
    bool write_ok = true;
    bool finished = false;  // Finish() was called (by next(), after the stream failed)
    std::atomic<bool> canceled{false};
};

watch_stream::watch_stream(std::unique_ptr<impl> p) : p_(std::move(p)) {}
watch_stream::~watch_stream() {
    if (!p_ || p_->finished) return;
    cancel();
    // Drain so that Finish() may complete; the stream is canceled, so this ends promptly.
    pb::WatchResponse r;
    while (p_->rw->Read(&r)) {
    }
    (void)p_->rw->Finish();
}
const std::string& watch_stream::endpoint() const {
    return p_->address;
}

bool watch_stream::next(watch_batch& out) {
    pb::WatchResponse r;
    if (!p_->rw->Read(&r)) {
        if (p_->canceled.load()) return false;
        auto st = p_->rw->Finish();
        p_->finished = true;
        throw error(errc::unavailable,
                    "etcd watch at " + p_->address + ": stream ended: " + st.error_message());
    }
    out.events.clear();
    out.events.reserve(static_cast<std::size_t>(r.events_size()));
    for (const auto& e : r.events()) {
        event ev;
        ev.what = e.type() == mvccpb::Event::DELETE ? event::kind::erase : event::kind::put;
        ev.kv = to_kv(e.kv());
        out.events.push_back(std::move(ev));
    }
    out.header_revision = r.header().revision();
    out.compact_revision = r.compact_revision();
    out.created = r.created();
    out.canceled = r.canceled();
    out.cancel_reason = r.cancel_reason();
    return true;
}

void watch_stream::request_progress() {
    std::lock_guard<std::mutex> g(p_->write_mu);
    if (!p_->write_ok || p_->canceled.load()) return;
    pb::WatchRequest req;
    req.mutable_progress_request();
    p_->write_ok = p_->rw->Write(req);
}

void watch_stream::cancel() {
    if (!p_->canceled.exchange(true)) p_->ctx.TryCancel();
}

std::unique_ptr<watch_stream> client::watch(const watch_options& o) {
    const auto deadline = clock::now() + p_->opts.call_timeout;
    for (std::size_t attempt = 0;; ++attempt) {
        const std::size_t idx = p_->current.load() % p_->eps.size();
        endpoint_state& ep = *p_->eps[idx];
        const auto now = clock::now();
        if (now >= deadline) throw error(errc::unavailable, "etcd watch: no endpoint could be connected");
        if (!ep.channel->WaitForConnected(sys(std::min(deadline, now + p_->opts.connect_timeout)))) {
            p_->failover(idx);
            p_->retries.fetch_add(1);
            continue;
        }
        auto s = std::make_unique<watch_stream::impl>();
        s->address = ep.address;
        // Like etcd's clientv3 WithRequireLeader: the member cancels the watch when it loses its leader,
        // instead of keeping a stream that silently stops delivering.
        s->ctx.AddMetadata("hasleader", "true");
        const std::string tok = p_->token(ep, deadline, false);
        if (!tok.empty()) s->ctx.AddMetadata("token", tok);
        p_->round_trips.fetch_add(1);
        s->rw = ep.watch->Watch(&s->ctx);
        pb::WatchRequest req;
        auto* c = req.mutable_create_request();
        c->set_key(o.key);
        c->set_range_end(o.range_end);
        c->set_start_revision(o.start_revision);
        c->set_progress_notify(o.progress_notify);
        if (!s->rw->Write(req)) {
            s->ctx.TryCancel();
            pb::WatchResponse r;
            while (s->rw->Read(&r)) {
            }
            (void)s->rw->Finish();
            p_->failover(idx);
            p_->retries.fetch_add(1);
            if (attempt > 2 * p_->eps.size())
                throw error(errc::unavailable,
                            "etcd watch at " + ep.address + ": could not send the request");
            continue;
        }
        return std::make_unique<watch_stream>(std::move(s));
    }
}

}  // namespace iterlock::etcd
