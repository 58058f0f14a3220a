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

TEST(EtcdFaults, M1_ThreeMembersLeaderKilledMidStream) {
    local_etcd cluster(3);
    etcd::client writer_client(opts(cluster.endpoints()));
    etcd::client mirror_client(opts(cluster.endpoints()));
    seq_map m(mirror_client, "ldr/");
    constexpr std::uint64_t writers = 2, per_writer = 80;
    std::atomic<std::uint64_t> done{0};
    std::vector<std::int64_t> last(writers);
    std::vector<std::thread> ts;
    for (std::uint64_t t = 0; t < writers; ++t)
        ts.emplace_back([&, t] {
            for (std::uint64_t i = 0; i < per_writer; ++i) {
                last[t] = std::max(last[t], write_sequence(writer_client, "ldr/", t, i, i + 1));
                done.fetch_add(1);
            }
        });
    while (done.load() < 40) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const int leader = cluster.leader();
    ASSERT_GE(leader, 0);
    cluster.kill(leader);
    int snapshots = 0;
    while (done.load() < writers * per_writer) {
        auto s = m.snapshot();
        expect_exact_prefixes(s.view, "snapshot while the leader is down");
        ++snapshots;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    for (auto& t : ts) t.join();
    ASSERT_TRUE(m.wait_applied(*std::max_element(last.begin(), last.end()), std::chrono::seconds(10)));
    auto s = m.snapshot();
    auto counts = expect_exact_prefixes(s.view, "final");
    for (std::uint64_t t = 0; t < writers; ++t) EXPECT_EQ(counts[t], per_writer);
    expect_equals_etcd(m, s);
    EXPECT_EQ(m.metrics().duplicate_events, 0u);
    EXPECT_GT(snapshots, 0);
}

// Three members; sequence writers write through two of them while this runs `fault` on the member the
// mirror's client uses first (a follower), then checks every snapshot taken meanwhile and the final one.
// Returns the mirror's metrics at the end.
template <class Fault>
void mirror_under_member_fault(const char* prefix, Fault&& fault, etcd::map_etcd_metrics& out) {
    local_etcd cluster(3);
    const int leader = cluster.leader();
    ASSERT_GE(leader, 0);
    const int f = (leader + 1) % 3, other = (leader + 2) % 3;
    etcd::client writer_client(opts({cluster.endpoint(leader), cluster.endpoint(other)}));
    etcd::client mirror_client(
        opts({cluster.endpoint(f), cluster.endpoint(leader), cluster.endpoint(other)}));
    seq_map m(mirror_client, prefix);
    constexpr std::uint64_t writers = 2, per_writer = 80;
    std::atomic<std::uint64_t> done{0};
    std::vector<std::int64_t> last(writers);
    std::vector<std::thread> ts;
    for (std::uint64_t t = 0; t < writers; ++t)
        ts.emplace_back([&, t] {
            for (std::uint64_t i = 0; i < per_writer; ++i) {
                last[t] = std::max(last[t], write_sequence(writer_client, prefix, t, i, i + 1));
                done.fetch_add(1);
            }
        });
    while (done.load() < 40) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::atomic<bool> fault_done{false};
    std::thread faulter([&] {
        fault(cluster, f);
        fault_done.store(true);
    });
    int snapshots = 0;
    while (done.load() < writers * per_writer || !fault_done.load()) {
        auto s = m.snapshot();
        expect_exact_prefixes(s.view, "snapshot during the fault");
        ++snapshots;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    faulter.join();
    for (auto& t : ts) t.join();
    ASSERT_TRUE(m.wait_applied(*std::max_element(last.begin(), last.end()), std::chrono::seconds(20)));
    auto s = m.snapshot();
    auto counts = expect_exact_prefixes(s.view, "final");
    for (std::uint64_t t = 0; t < writers; ++t) EXPECT_EQ(counts[t], per_writer);
    expect_equals_etcd(m, s);
    EXPECT_EQ(m.metrics().duplicate_events, 0u);
    EXPECT_EQ(m.metrics().relists, 1u);  // resumed from its label, never re-listed
    EXPECT_GT(snapshots, 0);
    out = m.metrics();
}

// The follower under the mirror's watch is SIGSTOPped for 2 s while writers write through the others: the
// watch stalls (a stopped member is a latency fault, not an error), snapshots stay exact but stale, and the
// mirror catches up without gap or duplicate once the member runs again.
TEST(EtcdFaults, M1_ThreeMembersMirrorsMemberStoppedMidStream) {
    etcd::map_etcd_metrics mm;
    mirror_under_member_fault(
        "stp/",
        [](local_etcd& cluster, int f) {
            cluster.stop(f);
            std::this_thread::sleep_for(std::chrono::seconds(2));
            cluster.resume(f);
        },
        mm);
}

// The mirror's own endpoint is killed and restarted mid-stream: the watch fails over to another member and
// resumes from its label (watch_restarts >= 1, relists == 1).
TEST(EtcdFaults, M1_ThreeMembersMirrorsEndpointRestartedMidStream) {
    etcd::map_etcd_metrics mm;
    mirror_under_member_fault(
        "rse/",
        [](local_etcd& cluster, int f) {
            cluster.kill(f);
            std::this_thread::sleep_for(std::chrono::milliseconds(500));
            cluster.restart(f);
        },
        mm);
    EXPECT_GE(mm.watch_restarts, 1u);
    EXPECT_GE(mm.client.failovers, 1u);
}

}  // namespace
