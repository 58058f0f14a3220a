// list-then-watch for iterlock::etcd::map (include/iterlock/etcd/detail/mirror_core.hpp, rules 1-4).
#include "iterlock/etcd/detail/mirror_core.hpp"

#include <algorithm>

namespace iterlock::etcd::detail {

using clock = std::chrono::steady_clock;

namespace {
std::int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now().time_since_epoch()).count();
}
void mark_behind(mirror_counters& c) {
    std::int64_t zero = 0;
    c.behind_since_ns.compare_exchange_strong(zero, now_ns());
}
}  // namespace

std::pair<std::vector<key_value>, std::int64_t> list_at(client& c, const std::string& key,
                                                        const std::string& range_end, std::int64_t revision,
                                                        std::int64_t page_size) {
    std::vector<key_value> out;
    range_options o;
    o.range_end = range_end;
    o.revision = revision;
    o.limit = page_size;
    std::string from = key;
    for (;;) {
        auto r = c.range(from, o);
        if (o.revision == 0) o.revision = r.revision;  // rule 1: every later page at the first's revision
        const bool more = r.more && !r.kvs.empty();
        if (more) from = r.kvs.back().key + std::string(1, '\0');
        if (out.empty())
            out = std::move(r.kvs);
        else
            std::move(r.kvs.begin(), r.kvs.end(), std::back_inserter(out));
        if (!more) break;
    }
    return {std::move(out), o.revision};
}

mirror_core::mirror_core(client& c, std::string prefix, mirror_sink& sink, mirror_config cfg)
    : client_(c), prefix_(std::move(prefix)), end_(prefix_end(prefix_)), sink_(sink), cfg_(cfg) {}

mirror_core::~mirror_core() {
    stop();
}

void mirror_core::set_applied(std::int64_t r) {
    {
        std::lock_guard<std::mutex> g(mu_);
        applied_.store(r, std::memory_order_release);
    }
    cv_.notify_all();
}

void mirror_core::relist(std::int64_t revision) {
    auto [kvs, rev] = list_at(client_, prefix_, end_, revision, cfg_.list_page_size);
    sink_.replace_all(std::move(kvs), rev);
    counters_.relists.fetch_add(1);
    set_applied(rev);
    counters_.behind_since_ns.store(0);  // exact at the revision etcd answered with: current as far as known
}

void mirror_core::note_seen(std::int64_t header_revision) {
    std::int64_t seen = counters_.latest_seen.load();
    while (header_revision > seen && !counters_.latest_seen.compare_exchange_weak(seen, header_revision)) {
    }
}

watch_options mirror_core::watch_from(std::int64_t start_revision) const {
    watch_options o;
    o.key = prefix_;
    o.range_end = end_;
    o.start_revision = start_revision;
    o.progress_notify = true;
    return o;
}

std::shared_ptr<watch_stream> mirror_core::watch_then_list() {
    std::shared_ptr<watch_stream> ws = client_.watch(watch_from(0));
    watch_batch b;
    if (!ws->next(b) || !b.created || b.canceled)
        throw error(errc::watch_canceled,
                    "etcd watch on " + prefix_ + " was not created: " + b.cancel_reason);
    note_seen(b.header_revision);
    relist(b.header_revision);  // rule 1: the watch delivers every event after this revision
    return ws;
}

void mirror_core::start() {
    std::shared_ptr<watch_stream> ws = watch_then_list();
    thread_ = std::thread([this, ws]() mutable { run(std::move(ws)); });
}

void mirror_core::stop() {
    stop_.store(true);
    {
        std::lock_guard<std::mutex> g(mu_);
        if (stream_) stream_->cancel();
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

bool mirror_core::wait_applied(std::int64_t revision, clock::time_point deadline) {
    std::unique_lock<std::mutex> lk(mu_);
    while (applied_.load(std::memory_order_acquire) < revision) {
        if (clock::now() >= deadline || stop_.load()) return false;
        // No on-demand progress request here: etcd 3.4.23 answers one with its current revision even
        // while this watcher is still unsynced (its events not yet sent), which would label the mirror
        // ahead of what it holds. Only events and etcd's own periodic progress notifications (sent to
        // synced watchers alone) advance applied().
        cv_.wait_until(lk, deadline);
    }
    return true;
}

void mirror_core::run(std::shared_ptr<watch_stream> ws) {
    auto backoff = std::chrono::milliseconds(10);
    while (!stop_.load()) {
        if (suspended_.load()) {
            if (ws) ws->cancel();
            ws.reset();
            std::unique_lock<std::mutex> lk(mu_);
            cv_.wait(lk, [this] { return stop_.load() || !suspended_.load(); });
            continue;
        }
        try {
            // A resumed watch (rule 2) starts behind etcd's head when writes came while it was away: etcd
            // then catches it up on its 100 ms cycle. A first watch or a re-list has none (rule 1).
            if (!ws) ws = client_.watch(watch_from(applied() + 1));
            {
                std::lock_guard<std::mutex> g(mu_);
                if (stop_.load()) {
                    ws->cancel();
                    break;
                }
                if (suspended_.load()) continue;  // the loop's top cancels it
                stream_ = ws;
            }
            watch_batch b;
            bool resync = false;
            while (ws->next(b)) {
                backoff = std::chrono::milliseconds(10);
                if (b.compact_revision > 0) {  // rule 4: our resume point was compacted away
                    resync = true;
                    break;
                }
                if (b.canceled) throw error(errc::watch_canceled, "etcd watch canceled: " + b.cancel_reason);
                note_seen(b.header_revision);
                if (b.created) {
                    // Created at the head (nothing after the resume point yet): current again.
                    if (b.header_revision <= applied()) counters_.behind_since_ns.store(0);
                    continue;
                }
                if (b.events.empty()) {
                    // A periodic progress notification (etcd sends them to synced watchers only): every
                    // event up to header_revision was sent.
                    if (b.header_revision > applied()) {
                        sink_.progressed(b.header_revision);
                        set_applied(b.header_revision);
                    }
                    counters_.behind_since_ns.store(0);
                    continue;
                }
                const std::int64_t last = b.events.back().kv.mod_revision;
                counters_.events.fetch_add(b.events.size());
                counters_.batches.fetch_add(1);
                sink_.apply(b.events, last);
                set_applied(last);
                if (last >= b.header_revision)
                    counters_.behind_since_ns.store(0);
                else
                    mark_behind(counters_);
            }
            {
                std::lock_guard<std::mutex> g(mu_);
                stream_.reset();
            }
            ws.reset();
            if (resync && !stop_.load()) {
                counters_.compaction_resyncs.fetch_add(1);
                ws = watch_then_list();
                continue;
            }
        } catch (const error&) {
            std::lock_guard<std::mutex> g(mu_);
            stream_.reset();
            ws.reset();
        }
        if (stop_.load()) break;
        mark_behind(counters_);
        counters_.watch_restarts.fetch_add(1);
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait_for(lk, backoff, [this] { return stop_.load(); });
        backoff = std::min(backoff * 2, cfg_.max_backoff);
    }
}

}  // namespace iterlock::etcd::detail
