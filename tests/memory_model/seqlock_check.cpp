// memory_model.R9_SeqlockReaderNeverValidatesATornPair: shard_lock's sequence reads (R9) under Relacy.
//
// The real shard_lock (detail/lock/shard_lock.hpp, compiled with ITERLOCK_RELACY so its atomics, fences,
// mutex and condition variables are Relacy's) guards a pair of words. A writer takes the lock, writes both
// words with the same value and releases; readers copy the pair with relaxed loads between read_begin() (or
// try_read_begin()) and read_validate(), as concurrent_map's optimistic finds do. R9 says a validated copy is
// a pair some writer left behind: both words equal. Relacy explores the interleavings and the values each
// relaxed or acquire load may return under the C++ memory model; one execution with a validated torn pair
// fails the check. read_begin() may also park in the lock's slow path (mutex + condition variable) while
// the writer holds: a lost wake-up there shows up as a Relacy deadlock.
#include "support/memory_model_check.hpp"

#include "iterlock/detail/lock/shard_lock.hpp"

namespace {

using iterlock::detail::shard_lock;

constexpr int writes = 2;

struct seqlock_reader_never_validates_a_torn_pair
    : rl::test_suite<seqlock_reader_never_validates_a_torn_pair, 3> {
    iterlock::test::boxed<shard_lock> lock;
    rl::atomic<int> first{0};  // the protected pair; read racily, so atomics with relaxed order
    rl::atomic<int> second{0};

    void thread(unsigned index) {
        if (index == 0) {
            for (int k = 1; k <= writes; ++k) {
                lock->lock();
                first($).store(k, rl::mo_relaxed);
                second($).store(k, rl::mo_relaxed);
                lock->unlock();
            }
            return;
        }
        for (int attempt = 0; attempt < writes; ++attempt) {
            std::uint64_t token = 0;
            if (index == 1) {
                token = lock->read_begin();  // may wait for the writer (slow path: mutex + condvar)
            } else if (!lock->try_read_begin(token)) {
                continue;
            }
            const int a = first($).load(rl::mo_relaxed);
            const int b = second($).load(rl::mo_relaxed);
            if (lock->read_validate(token)) RL_ASSERT(a == b);
        }
    }
};

}  // namespace

int main(int argc, char** argv) {
    return iterlock::test::run<seqlock_reader_never_validates_a_torn_pair>(
        "R9_SeqlockReaderNeverValidatesATornPair", argc, argv);
}
