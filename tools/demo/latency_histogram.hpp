// tools/demo/latency_histogram.hpp: the demo's latency recorder, a log-linear histogram of nanoseconds.
//
// Owns: iterlock_demo::latency_histogram.
// Invariants:
//   - every value lands in exactly one bucket; buckets cover [0, 2^64) without gaps; below 64 ns each
//     nanosecond has its own bucket, above it each power of two is split into 32 equal buckets, so a
//     reported quantile is within 1/32 (about 3%) of the true value;
//   - total() is the number of record() calls; max() is the exact largest value recorded;
//   - quantile(q) is non-decreasing in q and never exceeds max().
// One writer per histogram (no atomics): each thread records into its own and merge() combines them after
// the threads are joined. record() is O(1) and never allocates (the buckets are allocated up front).
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace iterlock_demo {

class latency_histogram {
  public:
    static constexpr unsigned sub_bits = 5;  // 32 buckets per power of two
    static constexpr std::size_t sub_count = std::size_t{1} << sub_bits;
    static constexpr std::size_t bucket_count = (64 - sub_bits + 1) * sub_count;

    latency_histogram() : counts_(bucket_count, 0) {}

    void record(std::uint64_t ns) noexcept {
        ++counts_[index_of(ns)];
        ++total_;
        max_ = std::max(max_, ns);
    }

    void merge(const latency_histogram& o) {
        for (std::size_t i = 0; i < bucket_count; ++i) counts_[i] += o.counts_[i];
        total_ += o.total_;
        max_ = std::max(max_, o.max_);
    }

    std::uint64_t total() const noexcept { return total_; }
    std::uint64_t max() const noexcept { return max_; }

    // The smallest bucket upper bound below which at least q of the values lie (q in [0, 1]), capped at
    // max(). 0 when empty. O(buckets).
    std::uint64_t quantile(double q) const noexcept {
        if (total_ == 0) return 0;
        const double want = std::clamp(q, 0.0, 1.0) * static_cast<double>(total_);
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < bucket_count; ++i) {
            seen += counts_[i];
            if (seen > 0 && static_cast<double>(seen) >= want) return std::min(upper_of(i), max_);
        }
        return max_;
    }

    // Visits the non-empty buckets in increasing order: f(lower_ns, upper_ns, count), bounds inclusive.
    template <class F>
    void for_each_bucket(F&& f) const {
        for (std::size_t i = 0; i < bucket_count; ++i)
            if (counts_[i] != 0) f(lower_of(i), std::min(upper_of(i), max_), counts_[i]);
    }

    // Bucket arithmetic (public for the tests of the demo's own invariants).
    static std::size_t index_of(std::uint64_t v) noexcept {
        if (v < 2 * sub_count) return static_cast<std::size_t>(v);
        const unsigned shift = static_cast<unsigned>(std::bit_width(v)) - (sub_bits + 1);
        return (shift + 1) * sub_count + static_cast<std::size_t>((v >> shift) - sub_count);
    }
    static std::uint64_t lower_of(std::size_t i) noexcept {
        if (i < 2 * sub_count) return i;
        const unsigned shift = static_cast<unsigned>(i / sub_count) - 1;
        return (static_cast<std::uint64_t>(i % sub_count) + sub_count) << shift;
    }
    static std::uint64_t upper_of(std::size_t i) noexcept {
        if (i < 2 * sub_count) return i;
        const unsigned shift = static_cast<unsigned>(i / sub_count) - 1;
        return lower_of(i) + ((std::uint64_t{1} << shift) - 1);
    }

  private:
    std::vector<std::uint64_t> counts_;
    std::uint64_t total_ = 0;
    std::uint64_t max_ = 0;
};

}  // namespace iterlock_demo
