// bench/lock_micro.cpp: microbenchmarks of iterlock::detail::shard_lock: uncontended acquire+release per
// role, sequence reads, and readers on one lock from several threads, next to std::shared_mutex as a
// baseline.
//
// Invariant: every figure is one acquire plus one release (or one read_begin plus one read_validate) per
// iteration, with an empty critical section, so the numbers are the lock's own cost.
#include <atomic>
#include <mutex>
#include <shared_mutex>

#include <benchmark/benchmark.h>

#include "iterlock/detail/lock/shard_lock.hpp"
#include "iterlock/priority.hpp"

namespace {

using iterlock::detail::shard_lock;

// ---- uncontended: one thread, its own lock ----

void bm_reader(benchmark::State& state) {
    shard_lock l;
    for (auto _ : state) {
        l.lock_shared();
        l.unlock_shared();
    }
}
BENCHMARK(bm_reader);

void bm_sequence_read(benchmark::State& state) {
    shard_lock l;
    std::uint64_t valid = 0;
    for (auto _ : state) valid += l.read_validate(l.read_begin()) ? 1 : 0;
    benchmark::DoNotOptimize(valid);
}
BENCHMARK(bm_sequence_read);

void bm_writer(benchmark::State& state) {
    shard_lock l;
    for (auto _ : state) {
        l.lock();
        l.unlock();
    }
}
BENCHMARK(bm_writer);

void bm_iteration(benchmark::State& state) {
    shard_lock l;
    for (auto _ : state) {
        l.lock_iteration(iterlock::priority::best_effort);
        l.unlock_iteration();
    }
}
BENCHMARK(bm_iteration);

void bm_iteration_upgrade(benchmark::State& state) {  // lock_iteration + upgrade + downgrade + unlock
    shard_lock l;
    for (auto _ : state) {
        l.lock_iteration(iterlock::priority::best_effort);
        l.upgrade_iteration_to_write();
        l.downgrade_write_to_iteration();
        l.unlock_iteration();
    }
}
BENCHMARK(bm_iteration_upgrade);

void bm_writer_with_wait_hook(benchmark::State& state) {  // the metrics hook on the fast path
    shard_lock l;
    std::chrono::nanoseconds waited{};
    for (auto _ : state) {
        l.lock(&waited);
        l.unlock();
    }
    benchmark::DoNotOptimize(waited);
}
BENCHMARK(bm_writer_with_wait_hook);

void bm_std_shared_mutex_reader(benchmark::State& state) {
    std::shared_mutex m;
    for (auto _ : state) {
        m.lock_shared();
        m.unlock_shared();
    }
}
BENCHMARK(bm_std_shared_mutex_reader);

void bm_std_shared_mutex_writer(benchmark::State& state) {
    std::shared_mutex m;
    for (auto _ : state) {
        m.lock();
        m.unlock();
    }
}
BENCHMARK(bm_std_shared_mutex_writer);

// ---- contended: every thread on the same lock ----

shard_lock shared_lock_for_threads;
std::shared_mutex shared_std_for_threads;

void bm_reader_shared_lock(benchmark::State& state) {
    for (auto _ : state) {
        shared_lock_for_threads.lock_shared();
        shared_lock_for_threads.unlock_shared();
    }
}
BENCHMARK(bm_reader_shared_lock)->Threads(1)->Threads(2)->UseRealTime();

void bm_sequence_read_shared_lock(benchmark::State& state) {
    std::uint64_t valid = 0;
    for (auto _ : state)
        valid += shared_lock_for_threads.read_validate(shared_lock_for_threads.read_begin()) ? 1 : 0;
    benchmark::DoNotOptimize(valid);
}
BENCHMARK(bm_sequence_read_shared_lock)->Threads(1)->Threads(2)->UseRealTime();

void bm_std_shared_mutex_reader_shared(benchmark::State& state) {
    for (auto _ : state) {
        shared_std_for_threads.lock_shared();
        shared_std_for_threads.unlock_shared();
    }
}
BENCHMARK(bm_std_shared_mutex_reader_shared)->Threads(1)->Threads(2)->UseRealTime();

// Readers with one writer in the mix (thread 0 writes every 16th operation): the reader fast path's undo and
// the writer's queue under real contention.
void bm_mixed_shared_lock(benchmark::State& state) {
    std::uint64_t i = 0;
    for (auto _ : state) {
        if (state.thread_index() == 0 && (++i & 15) == 0) {
            shared_lock_for_threads.lock();
            shared_lock_for_threads.unlock();
        } else {
            shared_lock_for_threads.lock_shared();
            shared_lock_for_threads.unlock_shared();
        }
    }
}
BENCHMARK(bm_mixed_shared_lock)->Threads(2)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
