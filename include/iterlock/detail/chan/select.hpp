// iterlock/detail/chan/select.hpp: the select engine (Go: runtime/select.go's selectgo), type-erased over
// chan_core so one select can mix channels of different element types.
//
// Owns: iterlock::detail::select_case, select_scratch, select_none, attempt(), select_run().
// Invariants: exactly one case commits per select_run (or none, for the default or the timeout), see the end
//       of this comment; nothing here allocates: the public wrapper (iterlock/select.hpp) builds the case
//       array and the scratch space on its stack.
//
// Algorithm:
//  1. Poll order: a uniformly random permutation of the channel cases (Fisher-Yates on a per-thread
//     generator), so that when several cases are ready each is chosen with equal probability.
//  2. Fast pass: try each case in poll order without holding locks other than the one a try takes itself;
//     the first that does not "would block" commits and wins. With a default case, stop here. Otherwise
//     repeat the pass under a bounded backoff before blocking.
//  3. Slow pass (Go's sellock): lock every distinct channel in address order, announce the buffered cases,
//     poll again in the same order, and if still nothing is ready, link one waiter per case, all sharing one
//     parker, unlock and park.
//  4. The first channel to claim the parker (a CAS, so exactly one) wins. An unbuffered channel claims it
//     while completing that case (the value already moved); a buffered channel claims it to notify, and the
//     select then tries that same case first, so the notification is not lost to another case, and loops
//     back to 2 if another thread took the value first. Either way the select relocks its channels to unlink
//     its other waiters before returning.
//  5. Timeout: the owner abandons the parker (CAS) at its deadline; if a claim beat it, it takes the claim.
//
// Exactly one case commits: a try commits only when it returns ok/closed and the engine returns right
// after; a waiter can be completed only by the claim that wins the parker's CAS.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <new>

#include "iterlock/detail/chan/core.hpp"
#include "iterlock/detail/chan/park.hpp"
#include "iterlock/detail/chan/waitq.hpp"

namespace iterlock::detail {

// One case as the engine sees it.
struct select_case {
    chan_core* ch = nullptr;  // nullptr: a nil channel or a non-channel case; never ready
    void* elem = nullptr;     // send: the T to move from; receive: raw storage for a T
    bool is_send = false;
    op_status status = op_status::would_block;  // outcome of the winning case
};

inline constexpr std::size_t select_none = SIZE_MAX;  // default or timeout

// Scratch space the caller provides, one entry per case (stack arrays in the public wrapper). `waiters`
// may be uninitialised storage: the slow path constructs each waiter before linking it.
struct select_scratch {
    std::uint32_t* order;
    chan_waiter* waiters;
    chan_core** locks;
};

namespace select_detail {

inline op_status attempt(select_case& c, bool locked, wake_list& wakes) noexcept {
    return c.is_send ? c.ch->try_send_erased(c.elem, locked, wakes)
                     : c.ch->try_recv_erased(c.elem, locked, wakes);
}

}  // namespace select_detail

// Runs one select over `cases[0..n)`. Returns the index of the committed case (its `status` set), or
// select_none when `nonblocking` and nothing was ready, or when `timed` and `deadline` passed first.
inline std::size_t select_run(select_case* cases, std::size_t n, select_scratch scratch, bool nonblocking,
                              bool timed, chan_clock::time_point deadline) noexcept {
    using select_detail::attempt;
    std::uint32_t* const order = scratch.order;
    chan_waiter* const waiters = scratch.waiters;
    chan_core** const locks = scratch.locks;

    // 1. Random poll order over the channel cases (Fisher-Yates, 16 random bits per step: the bias is at
    //    most n / 65536 and zero for n a power of two).
    std::size_t m = 0;
    for (std::size_t i = 0; i < n; ++i) {
        if (cases[i].ch) order[m++] = static_cast<std::uint32_t>(i);
    }
    {
        std::uint64_t bits = 0;
        unsigned left = 0;
        for (std::size_t k = m; k > 1; --k) {
            if (left == 0) {
                bits = thread_random();
                left = 4;
            }
            std::size_t const j = static_cast<std::size_t>(((bits & 0xffffu) * k) >> 16);
            bits >>= 16;
            --left;
            std::uint32_t const t = order[k - 1];
            order[k - 1] = order[j];
            order[j] = t;
        }
    }

    // 2. Fast passes.
    backoff b;
    for (;;) {
        wake_list wakes;
        for (std::size_t k = 0; k < m; ++k) {
            select_case& c = cases[order[k]];
            op_status const st = attempt(c, false, wakes);
            if (st != op_status::would_block) {
                c.status = st;
                return order[k];
            }
        }
        if (nonblocking) return select_none;
        if (timed && chan_clock::now() >= deadline) return select_none;
        if (b.done()) break;
        b.snooze();
    }

    // 3-5. Slow passes. Lock order: the distinct channels sorted by address.
    std::size_t nlocks = 0;
    for (std::size_t k = 0; k < m; ++k) {
        chan_core* const c = cases[order[k]].ch;
        std::size_t pos = nlocks;
        while (pos > 0 && std::less<chan_core*>{}(c, locks[pos - 1])) --pos;
        if (pos > 0 && locks[pos - 1] == c) continue;  // already present
        for (std::size_t q = nlocks; q > pos; --q) locks[q] = locks[q - 1];
        locks[pos] = c;
        ++nlocks;
    }
    auto waiter_at = [waiters](std::size_t i) { return std::launder(waiters + i); };
    chan_parker parker;
    for (;;) {
        wake_list wakes;
        lock_all(locks, nlocks);
        for (std::size_t k = 0; k < m; ++k) cases[order[k]].ch->unprotected_announce(cases[order[k]].is_send);
        for (std::size_t k = 0; k < m; ++k) {
            select_case& c = cases[order[k]];
            op_status const st = attempt(c, true, wakes);
            if (st != op_status::would_block) {
                for (std::size_t q = 0; q < m; ++q)
                    cases[order[q]].ch->unprotected_retract(cases[order[q]].is_send);
                unlock_all(locks, nlocks);
                wakes.signal_all();
                c.status = st;
                return order[k];
            }
        }
        for (std::size_t k = 0; k < m; ++k) {
            std::uint32_t const i = order[k];
            chan_waiter& w = *::new (static_cast<void*>(waiters + i)) chan_waiter{};
            w.parker = &parker;
            w.elem = cases[i].elem;
            w.case_index = i;
            cases[i].ch->unprotected_link(&w, cases[i].is_send);
        }
        unlock_all(locks, nlocks);

        bool signalled = parker.wait(timed, deadline);
        bool const abandoned = !signalled && parker.try_abandon();
        if (!signalled && !abandoned) signalled = parker.wait(false, {});

        lock_all(locks, nlocks);
        for (std::size_t k = 0; k < m; ++k) {
            std::uint32_t const i = order[k];
            cases[i].ch->unprotected_unlink(waiter_at(i), cases[i].is_send);
        }
        unlock_all(locks, nlocks);
        if (abandoned) return select_none;

        std::uint32_t const won = parker.claimed_case();
        select_case& c = cases[won];
        if (!c.ch->buffered()) {
            c.status = waiter_at(won)->transferred ? op_status::ok : op_status::closed;
            return won;
        }
        // Notified by a buffered channel: honour that notification first.
        op_status const st = attempt(c, false, wakes);
        if (st != op_status::would_block) {
            c.status = st;
            return won;
        }
        if (timed && chan_clock::now() >= deadline) return select_none;
        parker.reset();
    }
}

}  // namespace iterlock::detail
