// iterlock/misuse.hpp: misuse detection shared by iterlock's containers: Go's fatal errors for concurrent
// map use, and what to do when one is detected (print and abort, as Go does, or throw
// `iterlock::concurrent_misuse`).
//
// Owns: iterlock::concurrent_misuse, iterlock::misuse_action, set_misuse_action(), get_misuse_action(),
//       iterlock::messages, iterlock::detail's misuse_origin, type_name<T>(), print_fatal(), report_misuse(),
//       fatal(), thread_tag().
// Invariants: report_misuse() never returns normally (it throws or aborts) and fatal() always aborts; the
//       action is read only after a misuse was detected; thread_tag() is nonzero and distinct per thread.
//
// The action is process-wide (an atomic), read only on the slow path after a misuse was detected.
//
// Messages. A map's report keeps Go's words and says which map it was, so that a log line leads to the
// code: "fatal error: concurrent map writes (iterlock::map<int, std::string> \"sessions\")". The part in
// parentheses is the container and its key and mapped types, then the name the program gave the map with
// map::set_name(), if any. The exception's what() is Go's words alone (a program that catches it knows
// which map it called).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

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

// The spelling of type T, as the compiler prints it ("int", "std::__cxx11::basic_string<char>"), or "?" on
// a compiler whose function signature this does not parse. For messages only.
template <class T>
constexpr std::string_view type_name() noexcept {
#if defined(__clang__) || defined(__GNUC__)
    const std::string_view sig = __PRETTY_FUNCTION__;  // "... type_name() [with T = int; ...]" (gcc)
    const std::size_t at = sig.find("T = ");           // "... type_name() [T = int]" (clang)
    if (at != std::string_view::npos) {
        const std::size_t to = sig.find_first_of(";]", at + 4);
        if (to != std::string_view::npos) return sig.substr(at + 4, to - at - 4);
    }
#endif
    return "?";
}

// Which container reported a misuse: its kind and key/mapped types, and the name the program gave it
// (nullptr: none). Printed after Go's words.
struct misuse_origin {
    const char* container;  // "iterlock::map"
    std::string_view key_type;
    std::string_view mapped_type;
    const char* name;
};

[[gnu::cold]] inline void print_fatal(const char* message, const misuse_origin* origin) noexcept {
    if (origin == nullptr) {
        std::fprintf(stderr, "fatal error: %s\n", message);
    } else {
        std::fprintf(stderr, "fatal error: %s (%s<%.*s, %.*s>%s%s%s)\n", message, origin->container,
                     static_cast<int>(origin->key_type.size()), origin->key_type.data(),
                     static_cast<int>(origin->mapped_type.size()), origin->mapped_type.data(),
                     origin->name != nullptr ? " \"" : "", origin->name != nullptr ? origin->name : "",
                     origin->name != nullptr ? "\"" : "");
    }
    std::fflush(stderr);
}

// Reports a detected misuse. Never returns normally. Cold and out of line, so the checks on the hot paths
// compile to a load, a test and a never-taken branch.
[[noreturn, gnu::cold, gnu::noinline]] inline void report_misuse(const char* message,
                                                                 const misuse_origin* origin = nullptr) {
    // Relaxed: a setting, no data hangs off it; set before the threads that misuse a map run.
    if (g_misuse_action.load(std::memory_order_relaxed) == misuse_action::throw_exception) {
        throw concurrent_misuse(message);
    }
    print_fatal(message, origin);
    std::abort();
}

// Misuse that cannot be turned into an exception (the structure may already be damaged): always aborts.
[[noreturn, gnu::cold, gnu::noinline]] inline void fatal(const char* message,
                                                         const misuse_origin* origin = nullptr) noexcept {
    print_fatal(message, origin);
    std::abort();
}

// A small nonzero number naming the calling thread (cheaper than std::this_thread::get_id() to compare).
inline std::uint64_t thread_tag() noexcept {
    static std::atomic<std::uint64_t> next{1};
    // Relaxed: only needs distinct values; nothing is published with it.
    thread_local const std::uint64_t tag = next.fetch_add(1, std::memory_order_relaxed);
    return tag;
}
}  // namespace detail

inline void set_misuse_action(misuse_action a) noexcept {
    // Relaxed: as in report_misuse().
    detail::g_misuse_action.store(a, std::memory_order_relaxed);
}
inline misuse_action get_misuse_action() noexcept {
    return detail::g_misuse_action.load(std::memory_order_relaxed);  // relaxed: as above
}

// Go's messages, verbatim, then iterlock's own (a map reports them with its origin, see above).
namespace messages {
inline constexpr const char* concurrent_writes = "concurrent map writes";
inline constexpr const char* read_during_write = "concurrent map read and map write";
inline constexpr const char* iteration_during_write = "concurrent map iteration and map write";
// Moving from a map, or into one (move construction, move assignment's source), while it has a live
// iterator; assigning to one (copy, move or initializer-list assignment's target); swapping one.
inline constexpr const char* moved_while_iterating = "map moved while an iteration is live";
inline constexpr const char* assigned_while_iterating = "map assigned while an iteration is live";
inline constexpr const char* swapped_while_iterating = "map swapped while an iteration is live";
inline constexpr const char* entry_used_after_move =
    "iterlock: entry used after the map moved or erased it (growth, clear, erase or move); look the key up "
    "again";
}  // namespace messages

}  // namespace iterlock
