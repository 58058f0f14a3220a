// tests/support/promtool_check.hpp: promtool's verdict on a text exposition, for the tests that hand
// iterlock's output (in-process and etcd registries) to the reference checker.
//
// Owns: iterlock::test::expect_promtool_accepts.
// Invariants: promtool runs as a child process in a temporary directory that is removed afterwards; the wait
// is bounded (60 s), so a hung promtool is a failure, never a hang.
#pragma once

#include <chrono>
#include <string>

#include <gtest/gtest.h>

#include "support/process.hpp"

namespace iterlock::test {

// Runs `promtool check metrics` (promtool at the path `promtool`) on `text`. Fails the running test, with
// promtool's output and the input, when promtool does not finish or rejects the text.
inline void expect_promtool_accepts(const std::string& promtool, const std::string& text) {
    temp_dir dir;
    write_file(dir.path() / "metrics.txt", text);
    child_process p({promtool, "check", "metrics"}, dir.path() / "out.txt", dir.path() / "metrics.txt");
    const auto rc = p.wait_for(std::chrono::seconds(60));
    ASSERT_TRUE(rc.has_value()) << "promtool did not finish";
    EXPECT_EQ(*rc, 0) << read_file(dir.path() / "out.txt") << "\n--- input:\n"
                      << read_file(dir.path() / "metrics.txt");
}

}  // namespace iterlock::test
