// iterlock/detail/reclaim/retire_list.hpp: blocks unlinked by a writer that optimistic readers may still
// be reading, each freed once no epoch section that began before its retirement is still open.
//
// Owns: iterlock::detail::retire_list<Item>.
// Invariants: every retired item is freed exactly once — at once when no epoch domain is set, else by a
//       reclaim() whose oldest open reader began after the item's stamp, or by free_all(); retire() never
//       throws: when the list cannot grow (std::bad_alloc) it waits for the readers (epoch E2) and frees at
//       once. Single-writer: the owner calls every member under the lock that serialises its writes.
// Users: the map core's unlinked arrays and overflow buckets (detail/map/table.hpp) and the snapshot
// store's dropped chain versions (detail/concurrent/snapshot_store.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "iterlock/detail/reclaim/epoch.hpp"

namespace iterlock::detail {

template <class Item>
class retire_list {
  public:
    // Readers of this domain may be reading what is retired from now on; null frees at once.
    void enable(epoch_domain* d) noexcept { domain_ = d; }
    bool enabled() const noexcept { return domain_ != nullptr; }
    // A stamp for items unlinked now (several items may share one). Requires: enabled().
    std::uint64_t stamp() const noexcept { return domain_->retire_stamp(); }
    // Waits until every epoch section open now has ended (for items freed outside the list). Requires:
    // enabled().
    void wait_for_readers() const noexcept { domain_->wait_until_safe(domain_->retire_stamp()); }

    // Retires `it`, unlinked at `stamp`; free(it) runs now if the domain is unset, or if the list cannot
    // grow (after waiting for the readers), else in a later reclaim(). Returns whether it was kept.
    template <class Free>
    bool retire(Item it, std::uint64_t stamp, Free&& free) noexcept {
        if (domain_ == nullptr) {
            free(it);
            return false;
        }
        return keep(it, stamp, free);
    }
    template <class Free>
    bool retire(Item it, Free&& free) noexcept {
        return retire(it, domain_ != nullptr ? stamp() : 0, free);
    }

    // Frees the items that no reader can reach any more: those retired before the oldest open epoch
    // section began (epoch_domain::oldest_reader()). O(size()).
    template <class Free>
    void reclaim(std::uint64_t oldest_reader, Free&& free) noexcept {
        std::erase_if(items_, [&](const entry& e) {
            if (e.stamp >= oldest_reader) return false;
            free(e.item);
            return true;
        });
    }
    // Frees every item. Requires: no reader can reach them (the owner is being destroyed, or waited).
    template <class Free>
    void free_all(Free&& free) noexcept {
        for (const entry& e : items_) free(e.item);
        items_.clear();
    }

    std::size_t size() const noexcept { return items_.size(); }
    bool empty() const noexcept { return items_.empty(); }

  private:
    // retire()'s part for a set domain. Apart from retire() so that the unset case (a map without
    // optimistic readers) stays a test and a call that compilers inline into the writer.
    template <class Free>
    bool keep(Item it, std::uint64_t stamp, Free& free) noexcept {
        try {
            items_.push_back({it, stamp});
            return true;
        } catch (...) {  // no memory to remember it: wait for the readers instead (epoch E2)
            domain_->wait_until_safe(stamp);
            free(it);
            return false;
        }
    }
    struct entry {
        Item item;
        std::uint64_t stamp;
    };
    std::vector<entry> items_;
    epoch_domain* domain_ = nullptr;
};

}  // namespace iterlock::detail
