// tests/support/etcd_sequences.hpp: what the etcd tests share: this test executable run again as a child
// process in a mode an environment variable selects (spawn_self), sequence writers (writer t writes keys
// seq_key(t, 0), seq_key(t, 1), ... in order, as W5 does in-process) and the checks that a mirror snapshot is
// an exact prefix of each writer's sequence and equals etcd's content at the snapshot's revision.
#pragma once

#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "iterlock/etcd/map.hpp"

extern "C" char** environ;

namespace iterlock::test {

// Runs this executable again with `name=value` added to the environment (the child picks its mode from it
// before main()). Returns the child's pid, or -1.
inline pid_t spawn_self(const std::string& name, const std::string& value) {
    std::vector<std::string> env;
    for (char** e = environ; *e; ++e) env.emplace_back(*e);
    env.push_back(name + "=" + value);
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string self = "/proc/self/exe";
    char* argv[] = {self.data(), nullptr};
    pid_t pid = -1;
    if (::posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv, envp.data()) != 0) return -1;
    return pid;
}

namespace etcd = iterlock::etcd;
using seq_map = etcd::map<std::uint64_t, std::uint64_t>;

inline std::uint64_t seq_key(std::uint64_t writer, std::uint64_t i) {
    return writer << 32 | i;
}

// Writes seq_key(t, i) = i for i in [from, to) through `c`. A write whose answer was lost
// (may_have_applied) or that found no endpoint is read back and sent again only if it is not there: never
// blindly (client.hpp C3). Returns the last committed revision.
inline std::int64_t write_sequence(etcd::client& c, const std::string& prefix, std::uint64_t t,
                                   std::uint64_t from, std::uint64_t to) {
    std::int64_t last = 0;
    for (std::uint64_t i = from; i < to;) {
        const std::string key = prefix + etcd::default_codec::encode(seq_key(t, i));
        try {
            last = c.put(key, etcd::default_codec::encode(i));
            ++i;
        } catch (const etcd::error& e) {
            if (e.code() != etcd::errc::may_have_applied && e.code() != etcd::errc::unavailable &&
                e.code() != etcd::errc::deadline)
                throw;
            for (;;) {  // read back before deciding
                try {
                    if (auto kv = c.get(key)) {
                        last = std::max(last, kv->mod_revision);
                        ++i;
                    }
                    break;
                } catch (const etcd::error&) {
                }
            }
        }
    }
    return last;
}

// Per writer, how many entries a snapshot holds; fails the test unless they are 0..n-1 (no hole).
template <class Entries>
std::map<std::uint64_t, std::uint64_t> expect_exact_prefixes(const Entries& entries, const char* what) {
    std::map<std::uint64_t, std::uint64_t> count, max_plus_one;
    for (const auto& [k, v] : entries) {
        EXPECT_EQ(v.value, k & 0xffffffffu) << what;
        ++count[k >> 32];
        max_plus_one[k >> 32] = std::max(max_plus_one[k >> 32], (k & 0xffffffffu) + 1);
    }
    for (const auto& [t, n] : count)
        EXPECT_EQ(n, max_plus_one[t]) << what << ": writer " << t << " has a hole";
    return count;
}

// The mirror snapshot equals etcd's content at its revision (keys, values, mod revisions).
inline void expect_equals_etcd(const seq_map& m, const seq_map::snapshot_type& s) {
    auto past = m.snapshot_at(s.revision);
    std::map<std::uint64_t, std::pair<std::uint64_t, std::int64_t>> a, b;
    for (const auto& [k, v] : s.view) a[k] = {v.value, v.mod_revision};
    for (const auto& [k, v] : past.entries) b[k] = {v.value, v.mod_revision};
    EXPECT_EQ(a, b) << "mirror at revision " << s.revision << " differs from etcd at that revision";
    EXPECT_EQ(s.view.size(), past.entries.size());
}

}  // namespace iterlock::test
