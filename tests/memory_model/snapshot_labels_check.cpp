// memory_model.S1_WriterAfterASnapshotsInstantPreservesWhatItOverwrites: the snapshot registry's labels,
// read by a writer inside its shard lock (detail/concurrent/snapshot_store.hpp, "Markers and labels"), under
// Relacy.
//
// The real snapshot_registry and shard_lock, compiled with ITERLOCK_RELACY. One chain of one shard: a value
// and its label, and room for pre-images, all plain data (rl::var) guarded by the shard lock. A writer does
// what shard_versions does for each change: under the lock, op_seq = seq(); if the chain's label is older
// and registry.needed(label, op_seq) says a live snapshot needs the old state, it copies a pre-image valid
// for markers [label, op_seq); then it writes and labels the chain op_seq. A snapshot takes a marker M
// (acquire()), reads the chain under the lock in shared mode and ends (release()). S1 needs the snapshot to
// find its instant: the chain itself when its label is <= M, otherwise a pre-image with lo <= M < hi. A
// writer that read the new seq but a stale "no snapshot is live" would skip the copy, and the snapshot would
// find neither: the check asserts it finds one. Relacy also reports a data race if the shard lock failed to
// order the plain data (R8).
#include "support/memory_model_check.hpp"

#include "iterlock/detail/concurrent/snapshot_store.hpp"
#include "iterlock/detail/lock/shard_lock.hpp"

namespace {

using iterlock::detail::shard_lock;
using iterlock::detail::snapshot_registry;

constexpr int writes = 2;

struct pre_image {
    rl::var<std::uint64_t> lo;
    rl::var<std::uint64_t> hi;
    rl::var<int> value;
};

struct writer_after_a_snapshots_instant_preserves_what_it_overwrites
    : rl::test_suite<writer_after_a_snapshots_instant_preserves_what_it_overwrites, 2> {
    iterlock::test::boxed<snapshot_registry> registry;
    iterlock::test::boxed<shard_lock> lock;
    rl::var<int> value;
    rl::var<std::uint64_t> label;
    pre_image pre_images[writes];
    rl::var<int> pre_image_count;

    void before() {
        value($) = 0;
        label($) = 0;
        pre_image_count($) = 0;
    }

    void thread(unsigned index) {
        if (index == 0) {
            for (int k = 1; k <= writes; ++k) {
                lock->lock();
                const std::uint64_t op_seq = registry->seq();
                const std::uint64_t old_label = label($);
                if (old_label < op_seq && registry->needed(old_label, op_seq)) {
                    pre_image& p = pre_images[pre_image_count($)];
                    p.lo($) = old_label;
                    p.hi($) = op_seq;
                    p.value($) = value($);
                    pre_image_count($) = pre_image_count($) + 1;
                }
                value($) = k;
                label($) = op_seq;
                lock->unlock();
            }
            return;
        }
        const std::uint64_t marker = registry->acquire();
        lock->lock_shared();
        bool found = label($) <= marker;
        for (int i = 0; !found && i < pre_image_count($); ++i)
            found = pre_images[i].lo($) <= marker && marker < pre_images[i].hi($);
        RL_ASSERT(found);
        lock->unlock_shared();
        iterlock::detail::sweep_range ended;
        registry->release(marker, ended);
    }
};

}  // namespace

int main(int argc, char** argv) {
    return iterlock::test::run<writer_after_a_snapshots_instant_preserves_what_it_overwrites>(
        "S1_WriterAfterASnapshotsInstantPreservesWhatItOverwrites", argc, argv);
}
