#!/usr/bin/env python3
"""Every numbered rule of a public header has a test named after it.

Reads the rules (`//   TAG  text` lines, TAG = letters + number: I3, S5, SEL2, GD7, ...) of
include/iterlock/*.hpp, include/iterlock/etcd/*.hpp and the lock rules R1-R9 of
include/iterlock/detail/lock/shard_lock.hpp, and the test names (Suite.Name) of the GoogleTest suites in the
header's own test folder, plus the memory-model checks (tests/memory_model, for the non-etcd layers). A rule
is covered when a test name carries its tag as a word of the name: `I7_...`, `..._S5_...`, or CamelCase
`MapIterationI3`, `SelectSEL2Fairness`.

Exit status 1 when a rule has no test, unless it is in KNOWN_MISSING below (each with the reason); a known
rule that has since gained a test is reported so the list can shrink. Run from ctest
(rules.every_rule_has_a_test) and by hand: tools/check_rule_tests.py [REPO_ROOT] [--list].
"""
import glob
import os
import re
import sys

# Header (relative to include/iterlock) -> the test folder whose suites check it.
LAYERS = {
    "map.hpp": "tests/map",
    "concurrent_map.hpp": "tests/concurrent",
    "versioned_map.hpp": "tests/concurrent",
    "iteration_lock.hpp": "tests/lock",
    "detail/lock/shard_lock.hpp": "tests/lock",
    "guarded.hpp": "tests/guarded",
    "chan.hpp": "tests/chan",
    "select.hpp": "tests/chan",
    "prometheus.hpp": "tests/observability",
}

# Rules without a test today: (header, tag) -> why.
KNOWN_MISSING = {
    ("etcd/client.hpp", "C1"): "per-call deadline across attempts: needs an endpoint that stalls (etcd tests)",
    ("etcd/client.hpp", "C3"): "read retried on another endpoint, write sent once: needs fault injection",
    ("etcd/client.hpp", "C4"): "linearizable vs serializable reads: not told apart by a one-member cluster",
    ("etcd/client.hpp", "C6"): "client shared by many threads: no threaded client test yet",
    ("etcd/error.hpp", "E3"): "watch_canceled for a reason other than compaction",
    ("etcd/error.hpp", "E4"): "decode errors counted and skipped by the mirror",
    ("etcd/map.hpp", "M2"): "staleness bound (mirror_lag_revisions)",
    ("etcd/map.hpp", "M9"): "the mirror's thread reconnects with backoff and never throws",
}

RULE = re.compile(r"^\s*//\s+((?:SEL|GD|LT|[A-Z])[0-9]+)\.?\s")
TEST = re.compile(r"^(?:TEST|TEST_F|TYPED_TEST|TEST_P)\(\s*(\w+),\s*(\w+)", re.M)
MM_CHECK = re.compile(r"iterlock_add_memory_model_check\((\w+)")


def rules(root):
    heads = sorted(glob.glob(os.path.join(root, "include/iterlock/*.hpp")) +
                   glob.glob(os.path.join(root, "include/iterlock/etcd/*.hpp")))
    heads.append(os.path.join(root, "include/iterlock/detail/lock/shard_lock.hpp"))
    found = []
    for h in heads:
        rel = os.path.relpath(h, os.path.join(root, "include/iterlock"))
        with open(h, encoding="utf-8") as f:
            for line in f:
                m = RULE.match(line)
                if m and (rel, m.group(1)) not in found:
                    found.append((rel, m.group(1)))
    return found


def test_names(root, folder):
    names = []
    for f in glob.glob(os.path.join(root, folder, "*.cpp")):
        with open(f, encoding="utf-8") as src:
            names += [a + "." + b for a, b in TEST.findall(src.read())]
    return names


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    root = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    with open(os.path.join(root, "tests/memory_model/CMakeLists.txt"), encoding="utf-8") as f:
        mm = ["memory_model." + n for n in MM_CHECK.findall(f.read())]
    missing, gained = [], []
    for rel, tag in rules(root):
        etcd = rel.startswith("etcd/")
        names = test_names(root, "tests/etcd" if etcd else LAYERS.get(rel, "tests"))
        if not etcd:
            names += mm
        word = re.compile(r"(?:^|[._a-z])" + tag + r"(?![0-9])")
        hits = [n for n in names if word.search(n)]
        if "--list" in argv:
            print(f"{rel:28} {tag:5} {len(hits):3}  {' '.join(hits[:2])}")
        if not hits and (rel, tag) not in KNOWN_MISSING:
            missing.append(f"{tag} ({rel})")
        if hits and (rel, tag) in KNOWN_MISSING:
            gained.append(f"{tag} ({rel})")
    for g in gained:
        print(f"note: {g} has a test now; remove it from KNOWN_MISSING in {__file__}")
    if missing:
        print("rules without a test named after them: " + ", ".join(missing))
        return 1
    print("every numbered rule has a test named after it"
          f" ({len(KNOWN_MISSING) - len(gained)} known exceptions)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
