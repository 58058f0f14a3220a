// iterlock/detail/metrics/source_registration.hpp: the registration of one metrics source (a map) with a
// registry that scrapes it, as a movable handle that unregisters it when it ends.
//
// Owns: iterlock::detail::source_registration<State>.
// Invariants: a handle with id != 0 stands for exactly one entry of State::sources (the one with that id);
//       reset(), the destructor and a move assignment remove it under State::mu, so they wait for a scrape
//       that is reading it and no scrape reads it afterwards; a moved-from handle holds nothing. State has
//       `std::mutex mu` and `sources`, a vector of entries with an `id`.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace iterlock::detail {

template <class State>
class source_registration {
  public:
    source_registration() noexcept = default;
    source_registration(std::weak_ptr<State> s, std::uint64_t id) noexcept : state_(std::move(s)), id_(id) {}
    source_registration(source_registration&& o) noexcept
        : state_(std::move(o.state_)), id_(std::exchange(o.id_, 0)) {}
    source_registration& operator=(source_registration&& o) noexcept {
        if (this != &o) {
            reset();
            state_ = std::move(o.state_);
            id_ = std::exchange(o.id_, 0);
        }
        return *this;
    }
    source_registration(const source_registration&) = delete;
    source_registration& operator=(const source_registration&) = delete;
    ~source_registration() { reset(); }

    // Removes the source; blocks while a scrape is reading it. No effect on an empty handle. O(sources).
    void reset() noexcept {
        if (id_ == 0) return;
        if (auto s = state_.lock()) {
            std::lock_guard lk(s->mu);
            std::erase_if(s->sources, [&](const auto& src) { return src.id == id_; });
        }
        state_.reset();
        id_ = 0;
    }
    // Registered, and the registry still exists.
    bool active() const noexcept { return id_ != 0 && !state_.expired(); }

  private:
    std::weak_ptr<State> state_;
    std::uint64_t id_ = 0;
};

}  // namespace iterlock::detail
