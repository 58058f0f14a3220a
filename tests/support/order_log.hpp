// tests/support/order_log.hpp: an append-only record of who entered a critical section, in order, for the
// suites that check hand-off order (R3, R4, L3, L4).
//
// Owns: iterlock::test::order_log. Invariant: entries() is a prefix-consistent copy (appends are locked).
#pragma once

#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace iterlock::test {

class order_log {
  public:
    void add(std::string who) {
        std::lock_guard<std::mutex> lk(mu_);
        entries_.push_back(std::move(who));
    }
    std::vector<std::string> entries() const {
        std::lock_guard<std::mutex> lk(mu_);
        return entries_;
    }

  private:
    mutable std::mutex mu_;
    std::vector<std::string> entries_;
};

}  // namespace iterlock::test
