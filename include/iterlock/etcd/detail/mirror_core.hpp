// iterlock/etcd/detail/mirror_core.hpp: list-then-watch over one key prefix, the engine under
// iterlock::etcd::map's local mirror (compiled in src/etcd/mirror_core.cpp, so the map's template holds no
// gRPC). It owns the watch thread and the revision bookkeeping; what the mirror holds is the sink's.
//
// Invariants (the M rules of map.hpp rest on them):
//   1. A list reads every page at ONE revision R; the watch delivers every event after R. Lists that read
//      each page at its own latest revision lose keys under writers. The mirror opens its watch first
//      (from etcd's head) and lists at the revision R its creation reports: a watch created at the head
//      is "synced" in etcd 3.4 and gets events at once, where one started at an older R + 1 after the
//      list would wait for etcd's 100 ms catch-up cycle (docs/ETCD.md, M2).
//   2. The sink sees, in order: replace_all(R), then apply() batches of whole revisions, strictly
//      ascending, each after the previous one returned; never an event at or below the revision it last
//      reached (a resumed watch starts at applied() + 1, on whichever endpoint answers).
//   3. applied() is the revision the sink last reached; it only grows, except that a re-list after
//      compaction sets it to the new list's revision (which is larger than the compacted one).
//   4. Compaction past the resume point (the watch is canceled with compact_revision > 0) re-lists at the
//      latest revision and counts compaction_resyncs; other stream failures reconnect with backoff
//      (watch_restarts) and resume without re-listing.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "iterlock/etcd/client.hpp"

namespace iterlock::etcd::detail {

struct mirror_sink {
    virtual ~mirror_sink() = default;
    // The prefix's whole content at revision `revision`.
    virtual void replace_all(std::vector<key_value>&& kvs, std::int64_t revision) = 0;
    // Events of whole revisions, ascending, after which the prefix is as of `revision`.
    virtual void apply(std::vector<event>& events, std::int64_t revision) = 0;
    // No event of the prefix in (the last revision reached, revision]: the prefix is as of `revision`.
    virtual void progressed(std::int64_t revision) = 0;
};

struct mirror_config {
    std::int64_t list_page_size = 0;             // 0: one unpaged Range per list
    std::chrono::milliseconds max_backoff{500};  // between watch reconnects
};

struct mirror_counters {
    std::atomic<std::uint64_t> relists{0}, compaction_resyncs{0}, watch_restarts{0}, events{0}, batches{0};
    std::atomic<std::int64_t> latest_seen{0};  // the largest header revision a watch response carried
    // steady_clock ns since when the mirror is known to be behind (a response whose last event is older
    // than its header revision, or a broken watch); 0 while it is current.
    std::atomic<std::int64_t> behind_since_ns{0};
};

// Lists the prefix [key, range_end) at `revision` (0: the latest), paging by `page_size` (0: unpaged), every
// page at the same revision (rule 1). Returns the entries and the revision read. Throws error(compacted).
std::pair<std::vector<key_value>, std::int64_t> list_at(client& c, const std::string& key,
                                                        const std::string& range_end, std::int64_t revision,
                                                        std::int64_t page_size);

struct mirror_test_access;

class mirror_core {
  public:
    mirror_core(client& c, std::string prefix, mirror_sink& sink, mirror_config cfg);
    ~mirror_core();
    mirror_core(const mirror_core&) = delete;
    mirror_core& operator=(const mirror_core&) = delete;

    // Opens the watch, lists (rule 1; throws on failure, nothing started) and starts the watch thread.
    void start();
    // Stops the watch thread; idempotent; called by the destructor.
    void stop();

    std::int64_t applied() const noexcept { return applied_.load(std::memory_order_acquire); }
    // Waits until applied() >= revision. A revision at which some key of the prefix changed is reached as
    // soon as its event is applied; one that touched no key of the prefix only when a later event or etcd's
    // periodic progress notification arrives. false: the deadline passed first.
    bool wait_applied(std::int64_t revision, std::chrono::steady_clock::time_point deadline);
    const mirror_counters& counters() const noexcept { return counters_; }

  private:
    friend struct mirror_test_access;
    void relist(std::int64_t revision);
    // Rule 1: a watch from the head, then the list at its creation's revision. Throws what both throw.
    std::shared_ptr<watch_stream> watch_then_list();
    watch_options watch_from(std::int64_t start_revision) const;
    void note_seen(std::int64_t header_revision);
    void run(std::shared_ptr<watch_stream> first);
    void set_applied(std::int64_t r);

    client& client_;
    std::string prefix_, end_;
    mirror_sink& sink_;
    mirror_config cfg_;
    mirror_counters counters_;
    std::atomic<std::int64_t> applied_{0};
    std::atomic<bool> stop_{false};
    std::atomic<bool> suspended_{false};  // tests only (mirror_test_access.hpp): no watch while set
    std::mutex mu_;                       // guards stream_ and pairs with cv_
    std::condition_variable cv_;
    std::shared_ptr<watch_stream> stream_;
    std::thread thread_;
};

}  // namespace iterlock::etcd::detail
