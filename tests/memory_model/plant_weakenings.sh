#!/usr/bin/env bash
# Shows that each memory-model check fails when the ordering it protects is weakened (issue 19): for every
# entry below, copies include/ to a scratch directory, makes one one-line change there (an acquire load made
# relaxed, a fence removed, a wake-up dropped), builds the check against the copy and runs it. The
# repository is never edited. Prints one line per planting: CAUGHT (the check failed, with Relacy's verdict)
# or MISSED. Not run by ctest (each planting is a separate build, ~10 s); run it by hand after changing a
# protocol:  tests/memory_model/plant_weakenings.sh [ITERATIONS]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
iterations=${1:-200000}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# check source # header under include/iterlock/detail # the exact text to replace # its replacement
# (\n in the texts is a newline)
plantings=(
  "seqlock_check.cpp#lock/shard_lock.hpp#token = state_.load(std::memory_order_acquire);#token = state_.load(std::memory_order_relaxed);"
  "seqlock_check.cpp#lock/shard_lock.hpp#        fence(std::memory_order_acquire);#        /* no fence */"
  "seqlock_check.cpp#lock/shard_lock.hpp#static void after_write_acquired() noexcept { fence(std::memory_order_release); }#static void after_write_acquired() noexcept {}"
  "seqlock_check.cpp#lock/shard_lock.hpp#// load).\n        const std::uint64_t old = state_.fetch_sub(write_bit, std::memory_order_release);#// load).\n        const std::uint64_t old = state_.fetch_sub(write_bit, std::memory_order_relaxed);"
  "epoch_check.cpp#reclaim/epoch.hpp#        } else {\n            fence(std::memory_order_seq_cst);#        } else {"
  "epoch_check.cpp#reclaim/epoch.hpp#    void heavy_fence() const noexcept {\n        fence(std::memory_order_seq_cst);#    void heavy_fence() const noexcept {"
  "epoch_check.cpp#reclaim/epoch.hpp#r.epoch.store(0, std::memory_order_release); }#r.epoch.store(0, std::memory_order_relaxed); }"
  "epoch_check.cpp#reclaim/epoch.hpp#const std::uint64_t e = r->epoch.load(std::memory_order_acquire);#const std::uint64_t e = r->epoch.load(std::memory_order_relaxed);"
  "epoch_check.cpp#reclaim/epoch.hpp#return epoch_.fetch_add(1, std::memory_order_acq_rel);#return epoch_.fetch_add(1, std::memory_order_relaxed);"
  "epoch_check.cpp#reclaim/epoch.hpp#r.epoch.store(epoch_.load(std::memory_order_acquire), std::memory_order_relaxed);#r.epoch.store(epoch_.load(std::memory_order_relaxed), std::memory_order_relaxed);"
  "snapshot_labels_check.cpp#concurrent/snapshot_store.hpp#return seq_.load(std::memory_order_acquire);#return seq_.load(std::memory_order_relaxed);"
  "snapshot_labels_check.cpp#concurrent/snapshot_store.hpp#seq_.store(m + 1, std::memory_order_seq_cst);#seq_.store(m + 1, std::memory_order_relaxed);"
  "snapshot_labels_check.cpp#concurrent/snapshot_store.hpp#if (live_.load(std::memory_order_acquire) == 0) return false;#if (live_.load(std::memory_order_relaxed) == 0) return false;"
  "chan_handover_check.cpp#chan/core.hpp#slot_state_.exchange(outcome, std::memory_order_release);#slot_state_.exchange(outcome, std::memory_order_relaxed);"
  "chan_handover_check.cpp#chan/core.hpp#if (old == slot_recv_sleeping || old == slot_send_sleeping) futex_wake(&slot_state_, 1);#(void)old;"
  "chan_handover_check.cpp#chan/park.hpp#if (wake_.exchange(2, std::memory_order_release) == 1) futex_wake(&wake_, 1);#if (wake_.exchange(2, std::memory_order_relaxed) == 1) futex_wake(&wake_, 1);"
  "chan_handover_check.cpp#chan/park.hpp#if (wake_.exchange(2, std::memory_order_release) == 1) futex_wake(&wake_, 1);#wake_.exchange(2, std::memory_order_release);"
  "chan_handover_check.cpp#chan/ring.hpp#s.stamp.store(tail + 1, std::memory_order_release);#s.stamp.store(tail + 1, std::memory_order_relaxed);"
  "chan_handover_check.cpp#chan/ring.hpp#            std::size_t const stamp = s.stamp.load(std::memory_order_acquire);\n            if (stamp == head + 1) {#            std::size_t const stamp = s.stamp.load(std::memory_order_relaxed);\n            if (stamp == head + 1) {"
  "chan_handover_check.cpp#chan/state.hpp#slot_state_.store(slot_free, std::memory_order_release);  // hands the slot#slot_state_.store(slot_free, std::memory_order_relaxed);  // hands the slot"
  "pull_feed_check.cpp#concurrent/feed.hpp#            process_light_fence();  // before reading whether a receiver parked#            /* no fence */"
  "pull_feed_check.cpp#concurrent/feed.hpp#if (locked) process_heavy_fence();#/* no fence */"
  "pull_feed_check.cpp#concurrent/feed.hpp#mark_->store(static_cast<std::uint32_t>(number), std::memory_order_release);#mark_->store(static_cast<std::uint32_t>(number), std::memory_order_relaxed);"
  "pull_feed_check.cpp#concurrent/feed.hpp#const std::uint32_t mark = (*marks_)[s].load(std::memory_order_acquire);#const std::uint32_t mark = (*marks_)[s].load(std::memory_order_relaxed);"
)

n=0
for p in "${plantings[@]}"; do
    IFS='#' read -r check header from to <<<"$p"
    n=$((n + 1))
    rm -rf "$scratch/include" && cp -r "$repo/include" "$scratch/include"
    python3 - "$scratch/include/iterlock/detail/$header" "$from" "$to" <<'PY'
import sys
path, old, new = sys.argv[1], sys.argv[2].replace('\\n', '\n'), sys.argv[3].replace('\\n', '\n')
text = open(path).read()
if text.count(old) != 1:
    sys.exit(f"planting not found exactly once in {path}: {old!r}")
open(path, 'w').write(text.replace(old, new))
PY
    g++ -std=c++20 -O1 -w -DITERLOCK_RELACY -I"$scratch/include" -I"$repo/tests" \
        "$repo/tests/memory_model/$check" -o "$scratch/check"
    if "$scratch/check" "$iterations" >"$scratch/log" 2>&1; then
        verdict="MISSED"
    else
        verdict="CAUGHT: $(grep -m1 -oE 'DATA RACE|USER ASSERT FAILED|DEADLOCK|LIVELOCK|[A-Z][A-Z ]+ \(' "$scratch/log" | head -1 | tr -d '(')"
    fi
    printf '%2d %-26s %-20s %s\n     %s -> %s\n' "$n" "$check" "$header" "$verdict" "$from" "$to"
done
