// iterlock/detail/reclaim/epoch.hpp: when memory that optimistic readers may still be reading can be freed
// (epoch-based reclamation).
//
// Owns: iterlock::detail::epoch_domain (its records, its section RAII type, the process-wide domain),
//       process_light_fence(), process_heavy_fence().
// Invariants: E1-E3 below: no block is freed while a section that could reach it is open; a section never
//       waits; records are per thread, reused and never freed.
//
// concurrent_map's optimistic finds (sequence-lock reads, concurrent_map.hpp) read a shard's buckets
// without holding its lock. A writer may meanwhile unlink an overflow bucket or retire a whole array; the
// reader's validation then fails and it retries, but until then it may still be reading the unlinked
// block, so the block must stay allocated. This file decides when it no longer can be read.
//
//   readers   section s(domain);   ... relaxed reads ...   (the destructor leaves)
//             enter: publish the global epoch G in the thread's record, then the light fence.
//             leave: store 0 (release).
//   writers   unlink the block (under the shard's lock), then stamp = retire_stamp() (G++), keep it.
//             free it once safe(stamp): the heavy fence, then no record shows an epoch <= stamp.
//
// Why it is safe (E1): take a reader whose record the reclaimer's scan read as 0 or as an epoch > stamp.
//   - an epoch e > stamp: the reader loaded G (acquire) after the increment that made it > stamp, which
//     synchronises with that increment (release); the unlink happened before it, so the reader cannot
//     reach the block.
//   - 0: the reader's store of its epoch comes after the scan's load. The reader's entry is followed by the
//     light fence and the scan preceded by the heavy one; together they order like two seq_cst fences
//     (store-buffering), so the reader's later reads see everything before the scan, the unlink included.
// E2: a reader's section never waits for anything (it never takes a lock), so a writer that must free
//     synchronously (wait_until_safe, the out-of-memory fallback) waits at most for sections to end.
// E3: records belong to threads for their lifetime and are reused, never freed; a scan is O(threads that
//     ever held a record at once).
// E4: the two fences. A reader enters once per find, a reclaimer scans once per many retired blocks, so
//     the cost goes to the scan. On Linux the light fence is only a compiler barrier and the heavy fence
//     is membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED), which makes every running thread of the process
//     execute a full memory barrier before it returns (a thread that is not running passes one when it is
//     switched in): wherever a reader was between its epoch store and its first read, that barrier now
//     separates them. It costs the scan microseconds (an interrupt to each CPU running one of our
//     threads) and spares every find a full fence: clang emits `mfence`, which keeps a find's loads from
//     overlapping the next find's (docs/DESIGN.md, section 5, has both costs measured); GCC's
//     `lock or` costs less only while nothing reloads the stack word it locks. Where membarrier cannot be
//     registered (not Linux, a kernel before 4.14, a seccomp filter) and under ThreadSanitizer (which
//     does not model it), both fences are seq_cst fences; asymmetric() says which.
//     The memory-model check (memory_model.E1_RetiredBlockNeverFreedUnderAReader, tests/memory_model)
//     runs this file under Relacy in the symmetric mode: membarrier's guarantee is modelled as what it
//     is at most, a seq_cst fence in the reader between its epoch store and its first read, paired with
//     the scan's seq_cst fence. In that mode the acquire on G in enter() is implied by the seq_cst fence
//     after it (a fence-acquire synchronization), so only the asymmetric mode, which Relacy cannot model
//     (it cannot place a fence inside another thread), depends on it; E1's first case states why.
//
// One domain serves the process (records are per thread, not per map): a thread's record costs one cache
// line; the scan reads one word per record. The domain is constant-initialised (no static-init guard on
// the find path); which fences it uses is decided once, when a map is built (prepare()) or else on first
// need (a claim or a scan), and never changes.
//
// The fast path (concurrent_map::find): fast_record() is the thread's record only where the fences are
// asymmetric, so a find that has one enters with enter_fast() — one load of G, one store, a compiler
// barrier — and tests nothing else; a thread without one (its first find, or symmetric fences) goes
// through the slow path and section, which fence as the mode requires.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <thread>

#if defined(__linux__)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "iterlock/detail/util/atomic_traits.hpp"
#include "iterlock/detail/util/fence.hpp"
#include "iterlock/detail/util/racy_read.hpp"  // ITERLOCK_DETAIL_TSAN

namespace iterlock::detail {

class epoch_domain {
  public:
    struct alignas(64) record {
        atomic<std::uint64_t> epoch{0};  // 0: not in a section; else the G it entered with
        atomic<bool> taken{false};
        record* next = nullptr;  // immutable once published
    };

    static epoch_domain& global() noexcept { return global_; }

    // Decides the fences now (E4) instead of at the first claim or scan. Deciding may register the process
    // for membarrier, and with several threads alive the kernel then waits for an RCU grace period
    // (milliseconds here): maps call this when they are built, so that no find, write or feed delivery
    // pays it. Once per process; later calls are one load.
    void prepare() const noexcept { (void)fence_mode(); }
    // Whether the fences are decided yet (a probe for tests; decides nothing).
    bool decided() const noexcept { return fences_.load(std::memory_order_acquire) != fences_undecided; }

    // The calling thread's record (claimed on first use, returned when the thread exits).
    record& mine() {
        record* r = tls_record();
        if (r == nullptr) [[unlikely]]
            r = claim();
        return *r;
    }

    // The calling thread's record if it has claimed one (any earlier mine()) and the fences are
    // asymmetric, else nullptr. One thread-local load: fast paths send every other case to a slow path
    // that calls mine() and opens a section.
    static record* fast_record() noexcept { return tls_fast_record(); }

    void enter(record& r) noexcept {
        // G: acquire, pairs with retire_stamp()'s release increment (E1, first case: a reader that saw the
        // new G sees the unlink); with symmetric fences the seq_cst fence below implies it, with asymmetric
        // ones it is needed. The record's store: relaxed, ordered before the section's reads by the light
        // fence, paired with the scan's heavy fence (E1, second case; checked:
        // memory_model.E1_RetiredBlockNeverFreedUnderAReader).
        r.epoch.store(epoch_.load(std::memory_order_acquire), std::memory_order_relaxed);
        light_fence();
    }
    // enter() for a record from fast_record(): the fences are asymmetric, so the light fence is a compiler
    // barrier and needs no test.
    static void enter_fast(record& r) noexcept {
        // As in enter(): G acquire pairs with retire_stamp()'s release; the record's store is relaxed,
        // ordered by the compiler barrier below plus the scan's membarrier (E4).
        r.epoch.store(global_.epoch_.load(std::memory_order_acquire), std::memory_order_relaxed);
        // Compiler barrier only: membarrier in the scan supplies the hardware fence (E4).
        std::atomic_signal_fence(std::memory_order_seq_cst);
    }
    // Release: pairs with the scan's acquire load of the record (oldest_reader), so the section's reads
    // happen before a free that saw 0.
    static void leave(record& r) noexcept { r.epoch.store(0, std::memory_order_release); }

    // Called after unlinking a block: the stamp to free it under.
    // acq_rel: the release half pairs with enter()'s acquire load of G (the unlink happens before any section
    // that entered with the new G; planted as relaxed, the E1 memory-model check fails). The acquire half is
    // not needed by E1 (Relacy passes with release alone); kept so a retirer also sees whatever earlier
    // retirers published.
    std::uint64_t retire_stamp() noexcept { return epoch_.fetch_add(1, std::memory_order_acq_rel); }

    // The oldest epoch a reader is in, or the maximum value if none is: blocks with stamp < this are safe.
    std::uint64_t oldest_reader() const noexcept {
        heavy_fence();
        std::uint64_t oldest = std::numeric_limits<std::uint64_t>::max();
        // Acquire: pairs with publish()'s acq_rel CAS, so the records' fields (next) are visible.
        for (record* r = head_.load(std::memory_order_acquire); r != nullptr; r = r->next) {
            // Acquire: pairs with leave()'s release store of 0 (the reader's reads happen before the free);
            // an epoch != 0 is ordered by the fences instead (E1).
            const std::uint64_t e = r->epoch.load(std::memory_order_acquire);
            if (e != 0 && e < oldest) oldest = e;
        }
        return oldest;
    }
    bool safe(std::uint64_t stamp) const noexcept { return stamp < oldest_reader(); }
    // Whether the fences are asymmetric (E4): readers pay a compiler barrier, scans a membarrier.
    bool asymmetric() const noexcept { return fence_mode() == fences_asymmetric; }
    // Waits until safe(stamp) (E2). Only for paths that cannot keep the block for later.
    void wait_until_safe(std::uint64_t stamp) const noexcept {
        while (!safe(stamp)) std::this_thread::yield();
    }

    // A read section (RAII).
    class section {
      public:
        explicit section(epoch_domain& d) : section(d, d.mine()) {}
        // With the thread's record already at hand (callers that open many sections).
        section(epoch_domain& d, record& r) : r_(r) { d.enter(r_); }
        ~section() { leave(r_); }
        section(const section&) = delete;
        section& operator=(const section&) = delete;

      private:
        record& r_;
    };

#if ITERLOCK_DETAIL_RELACY
    // The memory-model checks build one domain per execution (Relacy's atomics are not constexpr, and the
    // process-wide global_ is not defined in that build).
    epoch_domain() = default;
#endif

    // Links `r` into the list of records that scans read (it stays there: E3). claim() uses it for the
    // records it allocates; the memory-model checks for records they own.
    void publish(record& r) noexcept {
        // Relaxed: a first guess for the CAS, which re-reads the head.
        record* h = head_.load(std::memory_order_relaxed);
        do {
            r.next = h;
            // acq_rel: the release half publishes r.next (and the record) to scans and claims (their acquire
            // load of head_); the acquire half pairs with earlier publishers' release, as the list is read
            // through h. Relaxed on failure (retry).
        } while (!head_.compare_exchange_weak(h, &r, std::memory_order_acq_rel, std::memory_order_relaxed));
    }

  private:
#if !ITERLOCK_DETAIL_RELACY
    constexpr epoch_domain() = default;
#endif

    static constexpr int fences_undecided = 0;
    static constexpr int fences_asymmetric = 1;
    static constexpr int fences_symmetric = 2;
    // Decides the fences on first use: asymmetric where membarrier registers (and not under TSan). Two
    // threads deciding at once both register (idempotent) and reach the same answer.
    int fence_mode() const noexcept {
        // Acquire: pairs with the CAS below that decided the mode (the registration it made happens before).
        int m = fences_.load(std::memory_order_acquire);
        if (m == fences_undecided) [[unlikely]] {
            const int decided = !ITERLOCK_DETAIL_TSAN && !ITERLOCK_DETAIL_RELACY && register_membarrier()
                                    ? fences_asymmetric
                                    : fences_symmetric;
            // acq_rel: release publishes the decision (and the membarrier registration) to the acquire load
            // above; acquire on failure reads another thread's decision.
            if (fences_.compare_exchange_strong(m, decided, std::memory_order_acq_rel)) m = decided;
        }
        return m;
    }

  public:
    // The fence pair of E4, also for other protocols of the same shape (a frequent side and a rare side,
    // each storing then loading, that must not both miss the other's store: versioned_map's pull feeds,
    // detail/concurrent/feed.hpp, through process_light_fence/process_heavy_fence below): the light fence
    // on the frequent side, the heavy one on the rare side.
    void light_fence() const noexcept {
        if (asymmetric()) {
            std::atomic_signal_fence(std::memory_order_seq_cst);
        } else {
            fence(std::memory_order_seq_cst);
        }
    }
    void heavy_fence() const noexcept {
        fence(std::memory_order_seq_cst);
        if (!asymmetric()) return;
#if defined(__linux__)
        if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0) [[unlikely]] {
            // Registered once, so this fails only if the registration was lost (EPERM; the kernel keeps
            // it across fork, not across exec, which starts a new process anyway): register again and
            // retry. If that fails too, freeing would be unsafe: stop, as for misuse.
            if (!register_membarrier() || membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0) {
                std::fputs("iterlock: membarrier(PRIVATE_EXPEDITED) failed after registration\n", stderr);
                std::abort();
            }
        }
#endif
        fence(std::memory_order_seq_cst);
    }

  private:
    // Registers the process for expedited private membarriers (once; the registration is per process and
    // idempotent). False where the kernel or a sandbox does not offer them.
    static bool register_membarrier() noexcept {
#if defined(__linux__)
        const long cmds = membarrier(MEMBARRIER_CMD_QUERY);
        if (cmds < 0 || (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return false;
        return membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
#else
        return false;
#endif
    }
#if defined(__linux__)
    static long membarrier(int cmd) noexcept {
        return ::syscall(__NR_membarrier, cmd, 0, 0);
    }
#endif

    static record*& tls_record() noexcept {
        thread_local record* r = nullptr;
        return r;
    }
    static record*& tls_fast_record() noexcept {
        thread_local record* r = nullptr;
        return r;
    }

    // Returns the record to the pool when the thread exits.
    struct release_on_exit {
        record* r = nullptr;
        ~release_on_exit() {
            if (r != nullptr) {
                tls_record() = nullptr;  // a later use on this thread (another TLS destructor) claims again
                tls_fast_record() = nullptr;
                // Release: as leave(); pairs with the scan's acquire load.
                r->epoch.store(0, std::memory_order_release);
                // Release: pairs with the next claimer's acq_rel CAS on taken, which then sees the record
                // quiet.
                r->taken.store(false, std::memory_order_release);
            }
        }
    };

    record* claim() {
        record* r = nullptr;
        // Acquire: pairs with publish()'s CAS (the records' next fields).
        for (record* p = head_.load(std::memory_order_acquire); p != nullptr; p = p->next) {
            bool expected = false;
            // Relaxed: a cheap pre-check; the CAS below decides, with acq_rel.
            if (!p->taken.load(std::memory_order_relaxed) &&
                // acq_rel: acquire pairs with release_on_exit's release store of false (the previous owner is
                // done with it); release is harmless, the record is not published again.
                p->taken.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
                r = p;
                break;
            }
        }
        if (r == nullptr) {
            r = new record;  // never freed (E3)
            // Relaxed: the record is not yet published; publish()'s release CAS carries this store.
            r->taken.store(true, std::memory_order_relaxed);
            publish(*r);
        }
        thread_local release_on_exit guard;
        guard.r = r;
        tls_record() = r;
        if (asymmetric()) tls_fast_record() = r;
        return r;
    }

    static epoch_domain global_;

    mutable atomic<int> fences_{fences_undecided};
    alignas(64) atomic<std::uint64_t> epoch_{1};
    alignas(64) atomic<record*> head_{nullptr};
};

#if !ITERLOCK_DETAIL_RELACY
inline constinit epoch_domain epoch_domain::global_;
#endif

// The process-wide domain's fence pair (E4), for other protocols of that shape (versioned_map's pull feeds).
// In the memory-model checks, which have no process-wide domain, both are the symmetric mode's seq_cst
// fences (what Relacy can model).
inline void process_light_fence() noexcept {
#if ITERLOCK_DETAIL_RELACY
    fence(std::memory_order_seq_cst);
#else
    epoch_domain::global().light_fence();
#endif
}
// Decides the process-wide domain's fences now (epoch_domain::prepare); nothing to decide in the checks.
inline void prepare_process_fences() noexcept {
#if !ITERLOCK_DETAIL_RELACY
    epoch_domain::global().prepare();
#endif
}
inline void process_heavy_fence() noexcept {
#if ITERLOCK_DETAIL_RELACY
    fence(std::memory_order_seq_cst);
#else
    epoch_domain::global().heavy_fence();
#endif
}

}  // namespace iterlock::detail
