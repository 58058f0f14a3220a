// iterlock/detail/concurrent/thread_state.hpp: what the calling thread is doing with concurrent maps, so
// that a call that would wait for a lock the thread itself holds becomes lock_error instead of a deadlock.
//
// Owns: iterlock::detail::thread_map_state, iterlock::detail::this_thread_maps().
// Invariants: `visiting` lists exactly the visit/cvisit/update/erase_if callbacks running on this thread,
//       innermost first (each frame lives on the stack of the call that runs the callback); `sweeping` names
//       the map whose snapshot sweep this thread runs, or null.
#pragma once

#include "iterlock/iteration_lock.hpp"

namespace iterlock::detail {

// What the calling thread is doing with concurrent maps, to turn would-be deadlocks into lock_error.
struct thread_map_state {
    // The visit/cvisit/update/erase_if callbacks running on this thread, innermost first: a callback may
    // call another map, whose callback may come back to the first (that re-entry would wait for a shard
    // lock this thread holds, so it is detected like a direct one).
    struct visit_frame {
        const void* map;
        const visit_frame* outer;
    };
    const visit_frame* visiting = nullptr;
    bool in_visit_of(const void* m) const noexcept {
        for (const visit_frame* f = visiting; f != nullptr; f = f->outer)
            if (f->map == m) return true;
        return false;
    }
    const void* sweeping = nullptr;  // the map whose snapshot sweep this thread is running
    // The nesting depth of this thread's locked-iteration guards of map `m`, or nullptr: kept with the
    // iteration_lock's holds (iteration_lock.hpp), one registry for both.
    int* depth_for(const void* m) noexcept { return this_thread_iteration_holds().depth_for(m); }
};
inline thread_map_state& this_thread_maps() noexcept {
    thread_local thread_map_state s;
    return s;
}

}  // namespace iterlock::detail
