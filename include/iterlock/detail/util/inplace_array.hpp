// iterlock/detail/util/inplace_array.hpp: a fixed number of objects that cannot move (locks, atomics), built
// in place in one block.
//
// Owns: iterlock::detail::inplace_array<T>.
// Invariants: the block holds exactly size() constructed objects, aligned to alignof(T); they are destroyed
//       in reverse order with the array; the array itself is neither copied nor moved.
//
// concurrent_map keeps its shards here rather than in a vector of unique_ptrs so that finding a key's shard
// is one address computation from the block's start instead of a load of the shard's pointer, on the path
// of every operation.
#pragma once

#include <cstddef>
#include <new>
#include <utility>

namespace iterlock::detail {

template <class T>
class inplace_array {
  public:
    // Constructs n objects as T(args...). Strong guarantee: if a constructor throws, the objects built so
    // far are destroyed, the block is freed and the exception propagates.
    template <class... Args>
    inplace_array(std::size_t n, const Args&... args)
        : data_(static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{alignof(T)}))) {
        try {
            for (; size_ < n; ++size_) ::new (static_cast<void*>(data_ + size_)) T(args...);
        } catch (...) {
            destroy();
            throw;
        }
    }
    ~inplace_array() { destroy(); }
    inplace_array(const inplace_array&) = delete;
    inplace_array& operator=(const inplace_array&) = delete;

    std::size_t size() const noexcept { return size_; }
    T& operator[](std::size_t i) const noexcept { return data_[i]; }
    T* begin() const noexcept { return data_; }
    T* end() const noexcept { return data_ + size_; }

  private:
    void destroy() noexcept {
        while (size_ != 0) data_[--size_].~T();
        ::operator delete (data_, std::align_val_t{alignof(T)});
    }

    T* data_;
    std::size_t size_ = 0;
};

}  // namespace iterlock::detail
