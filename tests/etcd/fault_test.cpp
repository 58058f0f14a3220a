// iterlock::etcd::map under faults, against real etcd members: compaction past the watch's resume point
// (M7), a member killed and restarted under the mirror, the leader of three members killed mid-stream
// (M1, M9), and with three members the mirror's own member SIGSTOPped or restarted under running writers.
// Each time the mirror resumes from its last applied revision: no gap (every snapshot an exact
// prefix of each sequence writer, and equal to etcd at its label) and no duplicate (duplicate_events == 0).
#include <gtest/gtest.h>

#include <thread>

#include "iterlock/etcd/detail/mirror_test_access.hpp"
#include "support/etcd_sequences.hpp"
#include "testing/local_etcd.hpp"

using namespace iterlock::test;
using etcd::testing::local_etcd;
using mirror_access = etcd::detail::mirror_test_access;

namespace {

etcd::client_options opts(std::vector<std::string> eps) {
    etcd::client_options o;
    o.endpoints = std::move(eps);
    o.call_timeout = std::chrono::milliseconds(3000);
    o.connect_timeout = std::chrono::milliseconds(300);
    return o;
}

TEST(EtcdFaults, M7_CompactionPastTheResumePointRelists) {
    local_etcd cluster;
    etcd::client c(opts(cluster.endpoints()));
    seq_map m(c, "cmp/");
    write_sequence(c, "cmp/", 0, 0, 20);
    mirror_access::suspend(mirror_access::core(m));  // the mirror is disconnected from here
    const auto before = m.applied_revision();
    const auto last = write_sequence(c, "cmp/", 0, 20, 60);
    c.erase("cmp/" + etcd::default_codec::encode(seq_key(0, 59)));
    const auto end = c.put("cmp/" + etcd::default_codec::encode(seq_key(0, 59)),
                           etcd::default_codec::encode(std::uint64_t{59}));
    ASSERT_GT(last, before);
    c.compact(end, true);  // past the mirror's resume point
    mirror_access::resume(mirror_access::core(m));
    ASSERT_TRUE(m.wait_applied(end, std::chrono::seconds(10)));
    const auto mm = m.metrics();
    EXPECT_EQ(mm.compaction_resyncs, 1u);
    EXPECT_EQ(mm.relists, 2u);
    auto s = m.snapshot();
    EXPECT_EQ(s.revision, end);
    EXPECT_EQ(expect_exact_prefixes(s.view, "after the re-list")[0], 60u);
    expect_equals_etcd(m, s);
    EXPECT_EQ(mm.duplicate_events, 0u);
}

TEST(EtcdFaults, M1_MirrorResumesAfterItsMemberRestarts) {
    local_etcd cluster;
    etcd::client c(opts(cluster.endpoints()));
    seq_map m(c, "rst/");
    const auto r1 = write_sequence(c, "rst/", 0, 0, 30);
    ASSERT_TRUE(m.wait_applied(r1));
    cluster.kill(0);
    // The broken watch marks the mirror as behind (mirror_lag_seconds > 0) until it is current again.
    for (int i = 0; i < 1000 && m.metrics().mirror_lag_seconds == 0; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    EXPECT_GT(m.metrics().mirror_lag_seconds, 0);
    cluster.restart(0);
    const auto r2 = write_sequence(c, "rst/", 0, 30, 60);
    ASSERT_TRUE(m.wait_applied(r2, std::chrono::seconds(10)));
    auto s = m.snapshot();
    EXPECT_EQ(expect_exact_prefixes(s.view, "after the restart")[0], 60u);
    expect_equals_etcd(m, s);
    const auto mm = m.metrics();
    EXPECT_GE(mm.watch_restarts, 1u);
    EXPECT_EQ(mm.relists, 1u);  // resumed, not re-listed
    EXPECT_EQ(mm.duplicate_events, 0u);
}

// Two sequence writers (0 and 1) that write 80 entries each through `c` under `prefix`, one put per entry.
// The constructor returns once 40 entries are written; the destructor joins whatever still runs.
struct sequence_writers {
    static constexpr std::uint64_t writers = 2, per_writer = 80;
    std::atomic<std::uint64_t> done{0};
    std::vector<std::int64_t> last = std::vector<std::int64_t>(writers);
    std::vector<std::thread> ts;

    sequence_writers(etcd::client& c, const std::string& prefix) {
        for (std::uint64_t t = 0; t < writers; ++t)
            ts.emplace_back([this, &c, prefix, t] {
                for (std::uint64_t i = 0; i < per_writer; ++i) {
                    last[t] = std::max(last[t], write_sequence(c, prefix, t, i, i + 1));
                    done.fetch_add(1);
                }
            });
        while (done.load() < 40) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    ~sequence_writers() { join(); }
    bool writing() const { return done.load() < writers * per_writer; }
    void join() {
        for (auto& t : ts)
            if (t.joinable()) t.join();
    }
    // After join(): the revision of the last write.
    std::int64_t last_revision() const { return *std::max_element(last.begin(), last.end()); }
};

// After the writers joined: the mirror applies their last write within `bound`, and its snapshot holds both
// sequences whole, equals etcd at its label, and came without a duplicate event.
void expect_mirror_caught_up(seq_map& m, const sequence_writers& w, std::chrono::seconds bound) {
    ASSERT_TRUE(m.wait_applied(w.last_revision(), bound));
    auto s = m.snapshot();
    auto counts = expect_exact_prefixes(s.view, "final");
    for (std::uint64_t t = 0; t < sequence_writers::writers; ++t)
        EXPECT_EQ(counts[t], sequence_writers::per_writer);
    expect_equals_etcd(m, s);
    EXPECT_EQ(m.metrics().duplicate_events, 0u);
}

TEST(EtcdFaults, M1_ThreeMembersLeaderKilledMidStream) {
    local_etcd cluster(3);
    etcd::client writer_client(opts(cluster.endpoints()));
    etcd::client mirror_client(opts(cluster.endpoints()));
    seq_map m(mirror_client, "ldr/");
    sequence_writers w(writer_client, "ldr/");
    const int leader = cluster.leader();
    ASSERT_GE(leader, 0);
    cluster.kill(leader);
    int snapshots = 0;
    while (w.writing()) {
        auto s = m.snapshot();
        expect_exact_prefixes(s.view, "snapshot while the leader is down");
        ++snapshots;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    w.join();
    ASSERT_NO_FATAL_FAILURE(expect_mirror_caught_up(m, w, std::chrono::seconds(10)));
    EXPECT_GT(snapshots, 0);
}

// Three members; sequence writers write through two of them while this takes the member the mirror's client
// uses first (a follower) down with `down`, waits `pause` and brings it back with `up`; it checks every
// snapshot taken meanwhile and the final one. Leaves the mirror's metrics at the end in `out`.
void mirror_under_member_fault(const char* prefix, void (local_etcd::*down)(int),
                               std::chrono::milliseconds pause, void (local_etcd::*up)(int),
                               etcd::map_etcd_metrics& out) {
    local_etcd cluster(3);
    const int leader = cluster.leader();
    ASSERT_GE(leader, 0);
    const int f = (leader + 1) % 3, other = (leader + 2) % 3;
    etcd::client writer_client(opts({cluster.endpoint(leader), cluster.endpoint(other)}));
    etcd::client mirror_client(
        opts({cluster.endpoint(f), cluster.endpoint(leader), cluster.endpoint(other)}));
    seq_map m(mirror_client, prefix);
    sequence_writers w(writer_client, prefix);
    std::atomic<bool> fault_done{false};
    std::thread faulter([&] {
        (cluster.*down)(f);
        std::this_thread::sleep_for(pause);
        (cluster.*up)(f);
        fault_done.store(true);
    });
    int snapshots = 0;
    while (w.writing() || !fault_done.load()) {
        auto s = m.snapshot();
        expect_exact_prefixes(s.view, "snapshot during the fault");
        ++snapshots;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    faulter.join();
    w.join();
    ASSERT_NO_FATAL_FAILURE(expect_mirror_caught_up(m, w, std::chrono::seconds(20)));
    EXPECT_EQ(m.metrics().relists, 1u);  // resumed from its label, never re-listed
    EXPECT_GT(snapshots, 0);
    out = m.metrics();
}

// The follower under the mirror's watch is SIGSTOPped for 2 s while writers write through the others: the
// watch stalls (a stopped member is a latency fault, not an error), snapshots stay exact but stale, and the
// mirror catches up without gap or duplicate once the member runs again.
TEST(EtcdFaults, M1_ThreeMembersMirrorsMemberStoppedMidStream) {
    etcd::map_etcd_metrics mm;
    mirror_under_member_fault("stp/", &local_etcd::stop, std::chrono::seconds(2), &local_etcd::resume, mm);
}

// The mirror's own endpoint is killed and restarted mid-stream: the watch fails over to another member and
// resumes from its label (watch_restarts >= 1, relists == 1).
TEST(EtcdFaults, M1_ThreeMembersMirrorsEndpointRestartedMidStream) {
    etcd::map_etcd_metrics mm;
    mirror_under_member_fault("rse/", &local_etcd::kill, std::chrono::milliseconds(500), &local_etcd::restart,
                              mm);
    EXPECT_GE(mm.watch_restarts, 1u);
    EXPECT_GE(mm.client.failovers, 1u);
}

}  // namespace
