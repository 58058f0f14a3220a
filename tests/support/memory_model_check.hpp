// tests/support/memory_model_check.hpp: the shared main() of the Relacy checks
// (tests/memory_model/*_check.cpp).
//
// Each check is one executable compiled with ITERLOCK_RELACY: the iterlock headers then take their atomics,
// fences, mutex and condition variable from Relacy (detail/util/atomic_traits.hpp). Relacy runs the test
// suite under its schedulers and prints the failing execution's history when an assertion, a data race on an
// rl::var, a deadlock or a livelock is found.
//
// Command line: [ITERATIONS] [random|bound] [CONTEXT_BOUND (default 2)]. Defaults: the scheduler and
// iteration count the check passes to run() ('random' unless it asks for 'bound'; chosen to keep every check
// a few seconds on a 2-core machine). 'bound' is Relacy's context-bound search (exhaustive for the given
// bound of preemptions; slower, and what finds a lost wake-up that needs a preemption at one exact point).
#pragma once

#ifndef ITERLOCK_RELACY
#error "the memory-model checks are compiled with ITERLOCK_RELACY (tests/memory_model/CMakeLists.txt)"
#endif

#include "iterlock/detail/util/atomic_traits.hpp"  // Relacy, without the macros of <relacy/relacy.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>

// Relacy replaces the global operator new and operator delete (to track memory inside an execution) but
// not the sized operator delete that C++14 code calls (std::allocator does): the library's default would
// then free() a block that Relacy handed out, and glibc aborts. Route it to Relacy's unsized one. One
// definition per program: each check is a single translation unit.
void operator delete(void* p, std::size_t) noexcept {
    ::operator delete(p);
}
void operator delete[](void* p, std::size_t) noexcept {
    ::operator delete[](p);
}

namespace iterlock::test {

// Relacy allocates each test suite with malloc() and constructs it in place, so a suite's members get
// malloc's alignment (16), not the 64 that shard_lock, the epoch records and the registry ask for (and the
// optimiser relies on). A suite therefore holds those through boxed<T>: one operator new per execution,
// which honours alignas.
template <class T>
class boxed {
  public:
    boxed() : p_(new T) {}
    ~boxed() { delete p_; }
    boxed(const boxed&) = delete;
    boxed& operator=(const boxed&) = delete;
    T& operator*() const noexcept { return *p_; }
    T* operator->() const noexcept { return p_; }

  private:
    T* p_;
};

template <class Suite>
// `context_bound` > 0: the default search is Relacy's context-bound one with that bound (the whole space,
// whatever the iteration count), else the random scheduler.
int run(const char* name, int argc, char** argv, unsigned long iterations = 200000,
        unsigned context_bound = 0) {
    rl::test_params params;
    params.iteration_count = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : iterations;
    if (argc > 2) context_bound = std::strcmp(argv[2], "bound") == 0 ? 2 : 0;
    if (argc > 3) context_bound = static_cast<unsigned>(std::strtoul(argv[3], nullptr, 10));
    if (context_bound > 0) {
        params.search_type = rl::fair_context_bound_scheduler_type;
        params.context_bound = context_bound;
    }
    std::printf("%s: %lu iterations, %s scheduler\n", name,
                static_cast<unsigned long>(params.iteration_count),
                params.search_type == rl::random_scheduler_type ? "random" : "context-bound");
    const bool ok = rl::simulate<Suite>(params);
    std::printf("%s: %s\n", name, ok ? "PASSED" : "FAILED");
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}

// Installs the futex model (detail/util/atomic_traits.hpp) for one execution: a suite whose code may sleep on
// a futex word (the channels) declares one before the objects that use it.
class futex_scope {
  public:
    futex_scope() { iterlock::detail::current_futex_model() = &*model_; }
    ~futex_scope() { iterlock::detail::current_futex_model() = nullptr; }

  private:
    boxed<iterlock::detail::futex_model> model_;
};

}  // namespace iterlock::test
