// memory_model.E1_RetiredBlockNeverFreedUnderAReader: epoch sections (detail/reclaim/epoch.hpp, E1) under
// Relacy.
//
// The real epoch_domain, compiled with ITERLOCK_RELACY. Two readers each publish a record (as a thread's
// first find does through claim()), open a section, follow the shard's pointer to the block it names and
// read the block. A writer replaces the pointer (the unlink a writer does under the shard lock), takes a
// retire stamp and frees the old block once safe(stamp) says so. "Freeing" writes the block's payload, an
// rl::var: if that write is not ordered after a reader's read of the same block by happens-before, Relacy
// reports a data race (the block was freed under a reader); a reader that sees the poison fails an assertion.
//
// How the asymmetric fences are modelled (E4). In production on Linux a reader's light fence is only a
// compiler barrier and the scan's heavy fence is membarrier(PRIVATE_EXPEDITED), which makes every running
// thread execute a full barrier, wherever it is; the strongest thing that guarantees is what a seq_cst fence
// in the reader at that point would give. Relacy cannot interrupt a fiber, so the check runs the domain in
// its symmetric mode: the light fence is a seq_cst fence in the reader, the heavy fence a seq_cst fence in
// the scan. That is the ordering membarrier provides (a full fence between the reader's epoch store and its
// first read, paired with the scanner's), and exactly the code that runs where membarrier cannot register
// and under ThreadSanitizer.
#include "support/memory_model_check.hpp"

#include "iterlock/detail/reclaim/epoch.hpp"

namespace {

using iterlock::detail::epoch_domain;

constexpr int live = 1;
constexpr int freed = -1;

struct block {
    rl::var<int> payload;
};

struct retired_block_never_freed_under_a_reader
    : rl::test_suite<retired_block_never_freed_under_a_reader, 3> {
    iterlock::test::boxed<epoch_domain> domain;
    iterlock::test::boxed<epoch_domain::record> records[2];
    block old_block;
    block new_block;
    rl::atomic<block*> current;  // the shard's link to the block (written under the shard lock in production)

    void before() {
        old_block.payload($) = live;
        new_block.payload($) = live;
        current($).store(&old_block, rl::mo_relaxed);
    }

    void thread(unsigned index) {
        if (index == 2) {
            // The writer: unlink, stamp, free when safe (a second scan if the first found a reader).
            current($).store(&new_block, rl::mo_release);
            const std::uint64_t stamp = domain->retire_stamp();
            for (int scan = 0; scan < 2; ++scan) {
                if (domain->safe(stamp)) {
                    old_block.payload($) = freed;
                    return;
                }
            }
            return;
        }
        epoch_domain::record& r = *records[index];
        r.taken.store(true, std::memory_order_relaxed);
        domain->publish(r);
        {
            const epoch_domain::section in_section(*domain, r);
            block* b = current($).load(rl::mo_acquire);
            const int seen = b->payload($);
            RL_ASSERT(seen == live);
        }
    }
};

}  // namespace

int main(int argc, char** argv) {
    return iterlock::test::run<retired_block_never_freed_under_a_reader>(
        "E1_RetiredBlockNeverFreedUnderAReader", argc, argv);
}
