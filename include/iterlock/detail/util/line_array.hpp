// iterlock/detail/util/line_array.hpp: a fixed-size array of small objects (atomic counters, marks) packed
// into cache lines of its own, for values one thread writes and another polls.
//
// Owns: iterlock::detail::line_array<T>.
// Invariants: the elements start on a cache-line boundary and the last line is padded to its end, so no
//       object outside the array shares a line with it: a write to an element moves only lines that the
//       array's own readers read (a heap neighbour written on every operation would otherwise move with
//       them). Elements are value-initialized. Not copyable; movable (the elements stay where they are).
#pragma once

#include <cstddef>
#include <memory>

namespace iterlock::detail {

template <class T>
class line_array {
    static constexpr std::size_t line_bytes = 64;

  public:
    // Elements per line (1 for an element of a line or more, such as a memory-model check's atomics).
    static constexpr std::size_t per_line = sizeof(T) >= line_bytes ? 1 : line_bytes / sizeof(T);

    line_array() = default;
    // Throws std::bad_alloc.
    explicit line_array(std::size_t n) : lines_(std::make_unique<line[]>((n + per_line - 1) / per_line)) {}

    T& operator[](std::size_t i) noexcept { return lines_[i / per_line].v[i % per_line]; }
    const T& operator[](std::size_t i) const noexcept { return lines_[i / per_line].v[i % per_line]; }

  private:
    struct alignas(line_bytes) line {
        T v[per_line]{};
    };
    std::unique_ptr<line[]> lines_;
};

}  // namespace iterlock::detail
