#!/usr/bin/env python3
"""Draws writer latency per contender (needs python3-matplotlib).

Three inputs, chosen by the CSV header:

  contender,lower_ns,upper_ns,count        iterlock-demo --latency-csv (or what --plot writes for itself):
                                           the full distribution, drawn as "fraction of writes slower
                                           than x" on log-log axes, one line per contender
  contender,metric,value,unit              iterlock-demo --csv: the summary percentiles
  workload,impl,size,threads,metric,...    iterlock-bench --csv: the write_p50/p99/p999/max_ns metrics
                                           of each (workload, size, threads), one figure per group

The two summary forms are drawn as percentile profiles: latency at p50, p99, p99.9 and max, one line per
contender. Examples:

  tools/plot_latency.py --latency lat.csv --output latency.png
  iterlock-demo --csv > demo.csv && tools/plot_latency.py --latency demo.csv --output demo.png
  iterlock-bench --workload W2 --csv > w2.csv && tools/plot_latency.py --latency w2.csv --output w2.png

With several bench groups, --output NAME.png becomes NAME-<workload>-<size>-<threads>.png.
"""
import argparse
import csv
import os
import sys
from collections import OrderedDict

PROFILE = [("write_p50_ns", "p50"), ("write_p99_ns", "p99"), ("write_p999_ns", "p99.9"), ("write_max_ns", "max")]


def read(path):
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if not rows:
        sys.exit(f"plot_latency: {path} is empty")
    return rows[0], rows[1:]


def distribution(rows):
    """contender -> [(upper_ns, count)] in increasing order."""
    out = OrderedDict()
    for contender, _lo, hi, n in rows:
        out.setdefault(contender, []).append((float(hi), int(n)))
    return out


def profiles_from_demo(rows):
    out = OrderedDict()
    for contender, metric, value, _unit in rows:
        out.setdefault(contender, {})[metric] = float(value)
    return OrderedDict([("", out)])


def profiles_from_bench(rows):
    """(workload, size, threads) -> impl -> metric -> value, keeping only groups with write percentiles."""
    groups = OrderedDict()
    for workload, impl, size, threads, metric, value, _unit in rows:
        if metric in dict(PROFILE):
            groups.setdefault(f"{workload}-{size}-{threads}", OrderedDict()).setdefault(impl, {})[metric] = float(value)
    return groups


def ns_label(v, _pos=None):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if v >= scale:
            return f"{v / scale:g} {unit}"
    return f"{v:g} ns"


def plot_distribution(dist, output, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for contender, buckets in dist.items():
        total = sum(n for _, n in buckets)
        if total == 0:
            continue
        xs, ys, above = [], [], total
        for hi, n in buckets:
            above -= n
            if above <= 0:
                break
            xs.append(max(hi, 1.0))
            ys.append(above / total)
        # The last point: the slowest write, with 1/total of writes at or above it.
        xs.append(max(buckets[-1][0], 1.0))
        ys.append(1.0 / total)
        ax.step(xs, ys, where="post", label=f"{contender} ({total:,} writes)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(ns_label))
    ax.set_xlabel("write latency")
    ax.set_ylabel("fraction of writes slower")
    for q, name in ((1e-2, "p99"), (1e-3, "p99.9"), (1e-4, "p99.99")):
        ax.axhline(q, color="0.85", linewidth=0.8, zorder=0)
        ax.text(ax.get_xlim()[0], q, f" {name}", va="bottom", fontsize=8, color="0.45")
    ax.grid(True, which="major", axis="x", color="0.9")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)


def plot_profile(contenders, output, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(8, 5))
    xs = list(range(len(PROFILE)))
    for contender, metrics in contenders.items():
        pts = [(x, metrics[m]) for x, (m, _) in zip(xs, PROFILE) if m in metrics and metrics[m] > 0]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=contender)
    ax.set_xticks(xs, [name for _, name in PROFILE])
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(ns_label))
    ax.set_xlabel("percentile of writes")
    ax.set_ylabel("write latency")
    ax.grid(True, which="major", color="0.9")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--latency", required=True, help="CSV from iterlock-demo or iterlock-bench")
    ap.add_argument("--output", required=True, help="PNG file to write")
    ap.add_argument("--title", default="writer latency per contender")
    args = ap.parse_args()

    header, rows = read(args.latency)
    try:
        if header == ["contender", "lower_ns", "upper_ns", "count"]:
            plot_distribution(distribution(rows), args.output, args.title)
            written = [args.output]
        else:
            if header == ["contender", "metric", "value", "unit"]:
                groups = profiles_from_demo(rows)
            elif header == ["workload", "impl", "size", "threads", "metric", "value", "unit"]:
                groups = profiles_from_bench(rows)
            else:
                sys.exit(f"plot_latency: unknown CSV header {','.join(header)}")
            if not groups:
                sys.exit("plot_latency: no write_p50/p99/p999/max_ns rows in the input")
            written = []
            stem, ext = os.path.splitext(args.output)
            for key, contenders in groups.items():
                out = args.output if len(groups) == 1 else f"{stem}-{key}{ext or '.png'}"
                plot_profile(contenders, out, args.title if not key else f"{args.title}: {key}")
                written.append(out)
    except ImportError:
        sys.exit("plot_latency: matplotlib is missing (Debian: apt-get install python3-matplotlib)")
    for w in written:
        print(f"plot_latency: wrote {w}", file=sys.stderr)


if __name__ == "__main__":
    main()
