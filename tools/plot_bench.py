#!/usr/bin/env python3
"""Turns iterlock-bench CSV into Markdown tables (for docs/BENCHMARKS.md) or bar charts.

Reads the CSV that `iterlock-bench --csv` prints (header `workload,impl,size,threads,metric,value,unit`)
from files or stdin. Rows keep the order they were measured in; a table has one row per implementation
and one column per metric, for each (workload, size, threads). With --baseline, each table is followed by
one table of ratios (value / baseline's value) per baseline present in that group.

  tools/plot_bench.py table results.csv [--baseline absl_flat_hash_map --baseline iterlock]
                      [--pending iterlock_snapshot] [--max-columns 6]
  tools/plot_bench.py plot results.csv --out figures/   (needs matplotlib)

Only the standard library is needed for `table`.
"""
import argparse
import csv
import sys
from collections import OrderedDict

HEADER = ["workload", "impl", "size", "threads", "metric", "value", "unit"]


def read_rows(paths):
    rows = []
    streams = [open(p, newline="") for p in paths] if paths else [sys.stdin]
    for f in streams:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != HEADER:
            sys.exit(f"plot_bench: expected header {','.join(HEADER)}, got {header}")
        for r in reader:
            if r:
                rows.append(dict(zip(HEADER, r), value=float(r[5])))
    return rows


def groups_of(rows):
    """(workload, size, threads) -> {'metrics': [(metric, unit)], 'impls': [...], 'v': {(impl, metric): value}}"""
    groups = OrderedDict()
    for r in rows:
        g = groups.setdefault((r["workload"], r["size"], r["threads"]),
                              {"metrics": [], "impls": [], "v": {}})
        if (r["metric"], r["unit"]) not in g["metrics"]:
            g["metrics"].append((r["metric"], r["unit"]))
        if r["impl"] not in g["impls"]:
            g["impls"].append(r["impl"])
        g["v"][(r["impl"], r["metric"])] = r["value"]
    return groups


def fmt(v):
    a = abs(v)
    if a >= 1000 or v == int(v):
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def ratio(r):
    return f"{r:.2f}x" if r == 0 or abs(r) >= 0.1 else f"{r:.2g}x"


def markdown(header, lines):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    out += ["| " + " | ".join(l) + " |" for l in lines]
    return "\n".join(out)


def chunks(items, n):
    return [items[i:i + n] for i in range(0, len(items), n)] if n > 0 else [items]


def table(args):
    for (workload, size, threads), g in groups_of(read_rows(args.csv)).items():
        impls = list(g["impls"]) + [p for p in args.pending if p not in g["impls"]]

        def cell(impl, m, text):
            if (impl, m) in g["v"]:
                return text
            return "pending" if impl in args.pending else ""

        print(f"\n#### {workload}, size {int(size):,}, threads {threads}")
        for metrics in chunks(g["metrics"], args.max_columns):
            header = ["impl"] + [f"{m} ({u})" for m, u in metrics]
            lines = [[impl] + [cell(impl, m, fmt(g["v"].get((impl, m), 0))) for m, _ in metrics] for impl in impls]
            print("\n" + markdown(header, lines))
        for base in args.baseline:
            if base not in g["impls"]:
                continue
            ratio_metrics = [(m, u) for m, u in g["metrics"] if u != "ratio" and g["v"].get((base, m))]
            for metrics in chunks(ratio_metrics, args.max_columns) if ratio_metrics else []:
                print(f"\nRatio to {base} (value / {base}'s):\n")
                header = ["impl"] + [m for m, _ in metrics]
                lines = [[impl] + [cell(impl, m, ratio(g["v"].get((impl, m), 0) / g["v"][(base, m)]))
                                   for m, _ in metrics] for impl in impls]
                print(markdown(header, lines))


def plot(args):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_bench: `plot` needs matplotlib (Debian: python3-matplotlib)")
    import os
    os.makedirs(args.out, exist_ok=True)
    for (workload, size, threads), g in groups_of(read_rows(args.csv)).items():
        for metric, unit in g["metrics"]:
            impls = [i for i in g["impls"] if (i, metric) in g["v"]]
            fig, ax = plt.subplots(figsize=(8, 0.4 * len(impls) + 1.2))
            ax.barh(impls, [g["v"][(i, metric)] for i in impls])
            ax.invert_yaxis()
            ax.set_xlabel(f"{metric} ({unit})")
            ax.set_title(f"{workload}, size {int(size):,}, threads {threads}")
            fig.tight_layout()
            fig.savefig(os.path.join(args.out, f"{workload}_{size}_{threads}_{metric}.png"), dpi=100)
            plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table", help="Markdown tables, with ratio tables per --baseline")
    t.add_argument("csv", nargs="*", help="CSV files (default: stdin)")
    t.add_argument("--baseline", action="append", default=[], help="implementation to divide by (repeatable)")
    t.add_argument("--pending", action="append", default=[], help="implementation not measured yet: a row of 'pending'")
    t.add_argument("--max-columns", type=int, default=0, help="split tables wider than this many metrics")
    t.set_defaults(func=table)
    q = sub.add_parser("plot", help="one horizontal bar chart per (workload, size, threads, metric)")
    q.add_argument("csv", nargs="*", help="CSV files (default: stdin)")
    q.add_argument("--out", default="bench-figures", help="output folder")
    q.set_defaults(func=plot)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
