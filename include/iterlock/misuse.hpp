// Misuse detection shared by iterlock's containers: Go's fatal errors for concurrent map use, and what to
// do when one is detected (print and abort, as Go does, or throw `iterlock::concurrent_misuse`).
//
// The action is process-wide (an atomic), read only on the slow path after a misuse was detected.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace iterlock {

// Thrown instead of aborting when the misuse action is `throw_exception`. what() is Go's text, e.g.
// "concurrent map writes".
struct concurrent_misuse : std::logic_error {
    using std::logic_error::logic_error;
};

enum class misuse_action {
    abort,            // print "fatal error: <message>" to stderr and std::abort(), as Go's runtime does
    throw_exception,  // throw iterlock::concurrent_misuse(<message>)
};

namespace detail {
inline std::atomic<misuse_action> g_misuse_action{misuse_action::abort};

// Reports a detected misuse. Never returns normally. Cold and out of line, so the checks on the hot paths
// compile to a load, a test and a never-taken branch.
[[noreturn, gnu::cold, gnu::noinline]] inline void report_misuse(const char* message) {
    if (g_misuse_action.load(std::memory_order_relaxed) == misuse_action::throw_exception) {
        throw concurrent_misuse(message);
    }
    std::fprintf(stderr, "fatal error: %s\n", message);
    std::fflush(stderr);
    std::abort();
}

// Misuse that cannot be turned into an exception (the structure may already be damaged): always aborts.
[[noreturn, gnu::cold, gnu::noinline]] inline void fatal(const char* message) noexcept {
    std::fprintf(stderr, "fatal error: %s\n", message);
    std::fflush(stderr);
    std::abort();
}

// A small nonzero number naming the calling thread (cheaper than std::this_thread::get_id() to compare).
inline std::uint64_t thread_tag() noexcept {
    static std::atomic<std::uint64_t> next{1};
    thread_local const std::uint64_t tag = next.fetch_add(1, std::memory_order_relaxed);
    return tag;
}
}  // namespace detail

inline void set_misuse_action(misuse_action a) noexcept {
    detail::g_misuse_action.store(a, std::memory_order_relaxed);
}
inline misuse_action get_misuse_action() noexcept {
    return detail::g_misuse_action.load(std::memory_order_relaxed);
}

// Go's messages, verbatim.
namespace messages {
inline constexpr const char* concurrent_writes = "concurrent map writes";
inline constexpr const char* read_during_write = "concurrent map read and map write";
inline constexpr const char* iteration_during_write = "concurrent map iteration and map write";
inline constexpr const char* moved_while_iterating = "map moved while an iteration is live";
inline constexpr const char* entry_used_after_move =
    "iterlock: entry used after the map moved or erased it (growth, clear, erase or move); look the key up "
    "again";
}  // namespace messages

}  // namespace iterlock
