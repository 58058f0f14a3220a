// iterlock/select.hpp: Go's select statement over any mix of send and receive cases on channels of
// different element types, with an optional default case and an optional timeout.
//
// Owns: iterlock::select(), iterlock::on_recv(), on_send(), on_default(), on_timeout(), on_deadline() and
//       the case types they build (recv_case, send_case, default_case, timeout_case); the engine is
//       detail/chan/select.hpp.
// Invariants: rules SEL1-SEL8 below: exactly one case runs per call, ready cases are chosen uniformly at
//       random, and a select costs no heap.
//
//   bool done = false;
//   while (!done) {                                   // for { select { ... } }
//       iterlock::select(
//           iterlock::on_recv(jobs, [&](std::optional<job> j) { if (j) run(*j); else done = true; }),
//           iterlock::on_send(results, std::move(r), [&] { r = next_result(); }),
//           iterlock::on_timeout(std::chrono::seconds(1), [&] { report_idle(); }));
//   }
//
// Contract. (Rules SEL1-SEL8; the S rules belong to concurrent_map's snapshots.)
//  SEL1  Exactly one case runs per call: select commits one channel operation (or the default, or the
//        timeout), then calls that case's handler, and returns its position in the argument list. No value is
//        taken from a channel whose case was not chosen, and no value is sent on one.
//  SEL2  Fairness: when several channel cases are ready, each is chosen with equal probability (a fresh
//        random poll order per call, as Go), so no ready case starves.
//  SEL3  on_default: if no channel case is ready the default runs at once; select never blocks.
//  SEL4  on_timeout / on_deadline: if no channel case became ready by then, the timeout case runs. Together
//        with a default, the default wins (it never waits).
//  SEL5  Receive cases see Go's `v, ok := <-c`: the handler gets std::optional<T>, std::nullopt when the
//        channel is closed and drained (a closed channel is always ready).
//  SEL6  A send case on a closed channel that gets chosen throws chan_closed (Go panics), before any handler.
//        A value passed to on_send as an rvalue is moved from only if its case is chosen; an lvalue is copied
//        into the case when the case is built.
//  SEL7  A case on a nil channel (default-constructed chan) is never ready; all-nil without default or
//        timeout blocks forever, as Go's `select {}`.
//  SEL8  No allocation: cases, waiters and scratch live on the caller's stack; select in a loop costs no
//        heap.
//
// Complexity: O(n) per call for n cases, plus n lock acquisitions when it has to block (never when some
// case is ready on entry). Handlers run after every channel lock is released; they may use the channels.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
#include <new>
#include <optional>
#include <tuple>
#include <type_traits>
#include <utility>

#include "iterlock/chan.hpp"
#include "iterlock/detail/chan/select.hpp"

namespace iterlock {

namespace detail {

enum class case_kind { channel, default_, timeout };

struct no_handler {
    template <class... A>
    void operator()(A&&...) const noexcept {}
};

}  // namespace detail

// A receive case (built by on_recv). Not copyable or movable: it lives in select's full-expression.
template <class T, class F>
class recv_case {
  public:
    static constexpr detail::case_kind kind = detail::case_kind::channel;

    recv_case(const chan<T>& ch, F f) : st_(detail::chan_access::state(ch)), f_(std::move(f)) {}
    recv_case(const recv_case&) = delete;
    recv_case& operator=(const recv_case&) = delete;

    void bind(detail::select_case& c) noexcept {
        c.ch = st_;
        c.elem = storage_;
        c.is_send = false;
    }
    void fire(const detail::select_case& c) {
        std::optional<T> v;
        if (c.status == detail::op_status::ok) {
            T* p = std::launder(reinterpret_cast<T*>(storage_));
            v.emplace(std::move(*p));
            p->~T();
        }
        if constexpr (std::is_invocable_v<F&, std::optional<T>&&>) {
            std::invoke(f_, std::move(v));
        } else {
            static_assert(std::is_invocable_v<F&>, "on_recv handler must take std::optional<T> or nothing");
            std::invoke(f_);
        }
    }

  private:
    detail::chan_state<T>* st_;
    F f_;
    alignas(T) unsigned char storage_[sizeof(T)];
};

// A send case (built by on_send). `Owned` says whether the value was copied into the case.
template <class T, class F, bool Owned>
class send_case {
  public:
    static constexpr detail::case_kind kind = detail::case_kind::channel;

    send_case(const chan<T>& ch, T&& v, F f) requires(!Owned)
        : st_(detail::chan_access::state(ch)), src_(&v), f_(std::move(f)) {}
    send_case(const chan<T>& ch, const T& v, F f) requires(Owned)
        : st_(detail::chan_access::state(ch)), own_(v), f_(std::move(f)) {}
    send_case(const send_case&) = delete;
    send_case& operator=(const send_case&) = delete;

    void bind(detail::select_case& c) noexcept {
        c.ch = st_;
        if constexpr (Owned) {
            c.elem = &own_;
        } else {
            c.elem = src_;
        }
        c.is_send = true;
    }
    void fire(const detail::select_case& c) {
        if (c.status != detail::op_status::ok) {
            throw chan_closed("iterlock::select: send case chosen on a closed channel (Go panics here)");
        }
        std::invoke(f_);
    }

  private:
    struct empty {};
    detail::chan_state<T>* st_;
    T* src_ = nullptr;
    [[no_unique_address]] std::conditional_t<Owned, T, empty> own_;
    F f_;
};

// The default case (built by on_default).
template <class F>
class default_case {
  public:
    static constexpr detail::case_kind kind = detail::case_kind::default_;
    explicit default_case(F f) : f_(std::move(f)) {}
    default_case(const default_case&) = delete;
    default_case& operator=(const default_case&) = delete;
    void bind(detail::select_case&) noexcept {}
    void fire(const detail::select_case&) { std::invoke(f_); }

  private:
    F f_;
};

// The timeout case (built by on_timeout / on_deadline).
template <class F>
class timeout_case {
  public:
    static constexpr detail::case_kind kind = detail::case_kind::timeout;
    timeout_case(std::chrono::steady_clock::time_point deadline, F f)
        : deadline_(deadline), f_(std::move(f)) {}
    timeout_case(const timeout_case&) = delete;
    timeout_case& operator=(const timeout_case&) = delete;
    void bind(detail::select_case&) noexcept {}
    void fire(const detail::select_case&) { std::invoke(f_); }
    std::chrono::steady_clock::time_point deadline() const noexcept { return deadline_; }

  private:
    std::chrono::steady_clock::time_point deadline_;
    F f_;
};

// --- case builders ---

// Receive from `ch`; `f` gets std::optional<T> (nullopt: closed and drained), or takes no argument.
template <class T, class F = detail::no_handler>
recv_case<T, std::decay_t<F>> on_recv(const chan<T>& ch, F&& f = {}) {
    return recv_case<T, std::decay_t<F>>(ch, std::forward<F>(f));
}

// Send `v` on `ch`; `f()` runs if this case is chosen. An rvalue `v` is moved from only then (SEL6).
template <class T, class F = detail::no_handler>
send_case<T, std::decay_t<F>, false> on_send(const chan<T>& ch, std::type_identity_t<T>&& v, F&& f = {}) {
    return send_case<T, std::decay_t<F>, false>(ch, std::move(v), std::forward<F>(f));
}
template <class T, class F = detail::no_handler>
send_case<T, std::decay_t<F>, true> on_send(const chan<T>& ch, const std::type_identity_t<T>& v, F&& f = {}) {
    return send_case<T, std::decay_t<F>, true>(ch, v, std::forward<F>(f));
}

template <class F = detail::no_handler>
default_case<std::decay_t<F>> on_default(F&& f = {}) {
    return default_case<std::decay_t<F>>(std::forward<F>(f));
}

template <class Rep, class Period, class F = detail::no_handler>
timeout_case<std::decay_t<F>> on_timeout(std::chrono::duration<Rep, Period> d, F&& f = {}) {
    using clock = std::chrono::steady_clock;
    auto const now = clock::now();
    clock::time_point deadline = now;
    if (d > std::chrono::duration<Rep, Period>::zero()) {
        deadline =
            std::chrono::duration_cast<std::chrono::duration<double>>(d).count() >
                    std::chrono::duration_cast<std::chrono::duration<double>>(clock::time_point::max() - now)
                            .count() /
                        2
                ? clock::time_point::max()
                : now + std::chrono::ceil<clock::duration>(d);
    }
    return timeout_case<std::decay_t<F>>(deadline, std::forward<F>(f));
}

template <class Clock, class Duration, class F = detail::no_handler>
timeout_case<std::decay_t<F>> on_deadline(std::chrono::time_point<Clock, Duration> t, F&& f = {}) {
    using clock = std::chrono::steady_clock;
    if constexpr (std::is_same_v<Clock, clock>) {
        return timeout_case<std::decay_t<F>>(std::chrono::ceil<clock::duration>(t), std::forward<F>(f));
    } else {
        return on_timeout(t - Clock::now(), std::forward<F>(f));
    }
}

namespace detail {

template <class C>
struct is_select_case : std::false_type {};
template <class T, class F>
struct is_select_case<recv_case<T, F>> : std::true_type {};
template <class T, class F, bool O>
struct is_select_case<send_case<T, F, O>> : std::true_type {};
template <class F>
struct is_select_case<default_case<F>> : std::true_type {};
template <class F>
struct is_select_case<timeout_case<F>> : std::true_type {};

}  // namespace detail

// Runs one select over the given cases (SEL1-SEL8) and returns the position of the case that ran.
template <class... Cases>
std::size_t select(Cases&&... cases) {
    constexpr std::size_t n = sizeof...(Cases);
    static_assert(n > 0, "iterlock::select needs at least one case");
    static_assert(
        (detail::is_select_case<std::remove_cvref_t<Cases>>::value && ...),
        "iterlock::select arguments must be built by on_recv/on_send/on_default/on_timeout/on_deadline");
    constexpr std::size_t n_default =
        (std::size_t{0} + ... + (std::remove_cvref_t<Cases>::kind == detail::case_kind::default_ ? 1 : 0));
    constexpr std::size_t n_timeout =
        (std::size_t{0} + ... + (std::remove_cvref_t<Cases>::kind == detail::case_kind::timeout ? 1 : 0));
    static_assert(n_default <= 1, "iterlock::select: at most one on_default case");
    static_assert(n_timeout <= 1, "iterlock::select: at most one on_timeout/on_deadline case");

    std::array<detail::select_case, n> descs{};
    std::array<std::uint32_t, n> order;
    std::array<detail::chan_core*, n> locks;
    // Waiters are built only when the select has to block.
    alignas(detail::chan_waiter) unsigned char waiter_storage[n * sizeof(detail::chan_waiter)];

    std::size_t default_index = n;
    std::size_t timeout_index = n;
    std::chrono::steady_clock::time_point deadline{};
    {
        std::size_t i = 0;
        auto bind_one = [&](auto& c) {
            using C = std::remove_cvref_t<decltype(c)>;
            c.bind(descs[i]);
            if constexpr (C::kind == detail::case_kind::default_) default_index = i;
            if constexpr (C::kind == detail::case_kind::timeout) {
                timeout_index = i;
                deadline = c.deadline();
            }
            ++i;
        };
        (bind_one(cases), ...);
    }

    std::size_t chosen = detail::select_run(
        descs.data(), n, {order.data(), reinterpret_cast<detail::chan_waiter*>(waiter_storage), locks.data()},
        /*nonblocking=*/default_index != n,
        /*timed=*/timeout_index != n, deadline);
    if (chosen == detail::select_none) chosen = default_index != n ? default_index : timeout_index;

    std::size_t i = 0;
    auto fire_one = [&](auto& c) {
        if (i++ == chosen) c.fire(descs[chosen]);
    };
    (fire_one(cases), ...);
    return chosen;
}

}  // namespace iterlock
