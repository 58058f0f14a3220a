// tests/support/element_types.hpp: instrumented key/value/hash/equality types for the map tests: a type that
// counts its constructions and destructions, a type whose copy throws on the N-th construction, a hash that
// throws on one chosen key, a hash that maps every key to the same value (so each probe must call KeyEqual),
// and an equality that throws on one chosen key.
//
// Invariants: `counted::live()` equals constructions minus destructions of not-yet-destroyed objects; a
// destructor that runs twice on the same object is recorded in `counted::double_destroys()` instead of
// being silent. All counters are process-wide atomics so threaded tests may use them.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <utility>

#include "iterlock/hash.hpp"

namespace iterlock::test {

// ---- counted: construction/destruction bookkeeping --------------------------------------------------------

class counted {
  public:
    counted() noexcept : counted(0) {}
    explicit counted(int v) noexcept : value_(v) { on_construct(); }
    counted(const counted& o) noexcept : value_(o.checked_value()) { on_construct(); }
    counted(counted&& o) noexcept : value_(o.checked_value()) { on_construct(); }
    counted& operator=(const counted& o) noexcept {
        value_ = o.checked_value();
        return *this;
    }
    counted& operator=(counted&& o) noexcept {
        value_ = o.checked_value();
        return *this;
    }
    ~counted() {
        if (magic_ != alive_magic) {
            double_destroys_.fetch_add(1, std::memory_order_relaxed);
        } else {
            live_.fetch_sub(1, std::memory_order_relaxed);
        }
        magic_ = dead_magic;
    }

    int value() const noexcept { return checked_value(); }
    friend bool operator==(const counted& a, const counted& b) noexcept { return a.value() == b.value(); }

    static long live() noexcept { return live_.load(std::memory_order_relaxed); }
    static long double_destroys() noexcept { return double_destroys_.load(std::memory_order_relaxed); }
    static long bad_reads() noexcept { return bad_reads_.load(std::memory_order_relaxed); }

  private:
    static constexpr std::uint32_t alive_magic = 0xC0FFEE11u;
    static constexpr std::uint32_t dead_magic = 0xDEADBEEFu;

    void on_construct() noexcept {
        magic_ = alive_magic;
        live_.fetch_add(1, std::memory_order_relaxed);
    }
    int checked_value() const noexcept {
        if (magic_ != alive_magic) bad_reads_.fetch_add(1, std::memory_order_relaxed);
        return value_;
    }

    int value_;
    std::uint32_t magic_ = 0;
    static inline std::atomic<long> live_{0};
    static inline std::atomic<long> double_destroys_{0};
    static inline std::atomic<long> bad_reads_{0};
};

struct counted_hash {
    std::uint64_t operator()(const counted& c) const noexcept { return iterlock::hash<int>{}(c.value()); }
};

// ---- throw_on_nth: the N-th counted construction throws ---------------------------------------------------

// Counts down on every construction except moves (K and V must be nothrow move constructible); the
// construction that brings the countdown to zero throws `nth_construction_error`. countdown 0 = disarmed.
struct nth_construction_error : std::runtime_error {
    nth_construction_error() : std::runtime_error("throw_on_nth: armed construction") {}
};

class throw_on_nth {
  public:
    throw_on_nth() : value_(0) { tick(); }
    throw_on_nth(int v) : value_(v) { tick(); }  // NOLINT: implicit on purpose, so maps take plain ints
    throw_on_nth(const throw_on_nth& o) : value_(o.value_) { tick(); }
    throw_on_nth(throw_on_nth&& o) noexcept : value_(o.value_) {}
    throw_on_nth& operator=(const throw_on_nth&) = default;
    throw_on_nth& operator=(throw_on_nth&&) noexcept = default;
    ~throw_on_nth() = default;

    int value() const noexcept { return value_; }
    friend bool operator==(const throw_on_nth& a, const throw_on_nth& b) noexcept {
        return a.value_ == b.value_;
    }

    // Arms the countdown: the n-th counted construction from now throws (n >= 1); 0 disarms.
    static void arm(int n) noexcept { countdown_.store(n, std::memory_order_relaxed); }
    static bool fired() noexcept { return fired_.load(std::memory_order_relaxed); }
    static void reset_fired() noexcept { fired_.store(false, std::memory_order_relaxed); }

  private:
    static void tick() {
        int c = countdown_.load(std::memory_order_relaxed);
        if (c <= 0) return;
        countdown_.store(c - 1, std::memory_order_relaxed);
        if (c == 1) {
            fired_.store(true, std::memory_order_relaxed);
            throw nth_construction_error();
        }
    }

    int value_;
    static inline std::atomic<int> countdown_{0};
    static inline std::atomic<bool> fired_{false};
};

struct throw_on_nth_hash {
    std::uint64_t operator()(const throw_on_nth& k) const noexcept {
        return iterlock::hash<int>{}(k.value());
    }
};

// ---- throwing_hash: throws when asked to hash the chosen key ----------------------------------------------

struct hash_error : std::runtime_error {
    hash_error() : std::runtime_error("throwing_hash: chosen key") {}
};

struct throwing_hash {
    static inline std::atomic<int> bad_key{-1};  // -1: never throws
    std::uint64_t operator()(int k) const {
        if (k == bad_key.load(std::memory_order_relaxed)) throw hash_error();
        return iterlock::hash<int>{}(k);
    }
};

// ---- colliding hash and throwing equality -----------------------------------------------------------------

// Every key hashes alike, whatever its type: the map must call KeyEqual against every entry of the one chain
// it uses (and a snapshot walk's first batch is the whole map).
struct constant_hash {
    template <class K>
    std::uint64_t operator()(const K&) const noexcept {
        return 42;
    }
};

struct equality_error : std::runtime_error {
    equality_error() : std::runtime_error("throwing_equal: chosen key") {}
};

struct throwing_equal {
    static inline std::atomic<int> bad_key{-1};
    bool operator()(int a, int b) const {
        const int bad = bad_key.load(std::memory_order_relaxed);
        if (a == bad || b == bad) throw equality_error();
        return a == b;
    }
};

}  // namespace iterlock::test
