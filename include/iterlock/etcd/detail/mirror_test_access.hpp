// Test access to iterlock::etcd::map's watch (detail/mirror_core.hpp): suspend it so a test can write and
// compact while the mirror is disconnected, then resume it. Tests only; not part of the API.
#pragma once

#include "iterlock/etcd/detail/mirror_core.hpp"

namespace iterlock::etcd::detail {

struct mirror_test_access {
    // Cancels the current watch and keeps the thread from opening another until resume(). Returns once
    // no stream is open.
    static void suspend(mirror_core& m) {
        m.suspended_.store(true);
        for (;;) {
            {
                std::lock_guard<std::mutex> g(m.mu_);
                if (!m.stream_) return;
                m.stream_->cancel();
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    }
    static void resume(mirror_core& m) {
        {
            std::lock_guard<std::mutex> g(m.mu_);
            m.suspended_.store(false);
        }
        m.cv_.notify_all();
    }
    template <class Map>
    static mirror_core& core(Map& m) {
        return m.core_;
    }
};

}  // namespace iterlock::etcd::detail
