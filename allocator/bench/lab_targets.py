#!/usr/bin/env python3
"""fancy against the issue's targets, from a lab sweep's report (analyze's summary.parquet).

    scripts/python allocator/bench/lab_targets.py results/lab-default/report   (Python Polars, in the lab's venv)

Prints Markdown: per trace × threads, median ops/s of each allocator and fancy's ratios; the
geometric mean of throughput over every trace × threads (target: fancy >= mimalloc); the
multithreaded ring-buffer (target: fancy >= 2x glibc); peak heap RSS over the lowest of glibc,
jemalloc and mimalloc (target: <= 1.15 on every workload); retained heap RSS of fancy-reclaim
after the last op (and 1 s / 0.1 s later, whichever the sweep measured) against glibc's (target:
<=); malloc and free P99 (timed pass).

Every figure is analyze's (analysis/README.md, "summary.parquet"): the median over a
configuration's ok runs, a configuration being one trace — by content hash, so the lab's
thread variants of a workload that makes its own threads are separate rows, told apart by
`trace_label` — × replay threads × allocator. This script only arranges those rows. Needs
Python Polars (analysis/requirements.txt).
"""
import math
import sys
from pathlib import Path

import polars as pl

PEERS = ["system", "jemalloc", "mimalloc"]
ROW = ["trace_label", "replay_threads"]


def load(root: Path, name: str) -> pl.DataFrame:
    files = sorted(root.rglob(name))
    if not files:
        sys.exit(f"lab_targets: no {name} under {root}: run analyze on the sweep first "
                 "(scripts/lab does, into <out>/report)")
    return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")


def wide(df: pl.DataFrame, col: str) -> pl.DataFrame:
    """One row per trace × threads, one column per allocator."""
    return (df.select(ROW + ["allocator", col])
            .pivot(on="allocator", index=ROW, values=col)
            .sort(ROW))


def over_lowest_peer(fancy: float, low: float) -> float:
    """fancy's peak heap RSS over the lowest peer's; a peer at 0 bytes counts (fancy above it is
    infinitely over, fancy at 0 too is even)."""
    if low > 0:
        return fancy / low
    return 1.0 if fancy <= 0 else math.inf


def fmt_ratio(r: float, target: float | None = None) -> str:
    """A ratio with two decimals, or as many more as it takes (up to 6) to show on which side
    of `target` it is: 1.1503 against 1.15 prints 1.1503×, never 1.15×."""
    if math.isinf(r):
        return "∞"
    d = 2
    while target is not None and d < 6:
        shown = round(r, d)
        if (shown > target) == (r > target) and (shown < target) == (r < target):
            break
        d += 1
    return f"{r:.{d}f}×"


def judged(r: float, target: float, at_least: bool) -> str:
    """`r` against its target, judged at full precision: '1.0042× (target ≥ 1: met)'."""
    ok = r >= target if at_least else r <= target
    sign = "≥" if at_least else "≤"
    return f"{fmt_ratio(r, target)} (target {sign} {target:g}: {'met' if ok else 'missed'})"


def table(rows, head):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def p99_section(lat: pl.DataFrame, allocs) -> None:
    """malloc and free P99 per trace x threads (median over ok repetitions): the geometric mean
    of each allocator's P99 and the rows where fancy's is highest against mimalloc's."""
    lat = lat.filter(((pl.col("quantile") - 0.99).abs() < 1e-9)
                     & pl.col("op").is_in(["malloc", "free"]))
    if lat.height == 0:
        return
    print("\n### P99 latency (timed pass; ns, median over ok repetitions; lower is better)\n")
    for op in ["malloc", "free"]:
        t = wide(lat.filter(pl.col("op") == op), "latency_ns")
        logs = {a: [] for a in allocs}
        worst = []
        for r in t.iter_rows(named=True):
            if any(not r.get(a) for a in allocs):
                continue
            for a in allocs:
                logs[a].append(math.log(r[a]))
            worst.append((r["fancy"] / r["mimalloc"], r["trace_label"], r["replay_threads"],
                          *[r[a] for a in allocs]))
        if not worst:
            continue
        geo = {a: math.exp(sum(v) / len(v)) for a, v in logs.items()}
        print(f"`{op}` P99, geometric mean over {len(worst)} trace × threads: "
              + ", ".join(f"{a} {g:.0f} ns" for a, g in geo.items()) + "\n")
        worst.sort(reverse=True)
        print(f"Highest fancy/mimalloc `{op}` P99:\n")
        print(table([[w[1], w[2]] + [f"{x:.0f}" for x in w[3:]] + [f"{w[0]:.2f}×"] for w in worst[:6]],
                    ["trace", "threads"] + allocs + ["fancy/mimalloc"]))
        print()


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = Path(sys.argv[1])
    df = load(root, "summary.parquet")
    if "machine" in df.columns and df["machine"].n_unique() > 1:
        sys.exit(f"lab_targets: {root}: results from {df['machine'].n_unique()} machine types "
                 f"({', '.join(sorted(df['machine'].unique()))}); the targets compare allocators "
                 "on one machine: analyze one machine type's results on their own")
    allocs = [a for a in ["system", "jemalloc", "mimalloc", "tcmalloc", "fancy", "fancy-reclaim"]
              if a in set(df["allocator"])]
    t = wide(df, "ops_per_sec_median")
    rows = []
    logs = {a: [] for a in allocs}
    for r in t.iter_rows(named=True):
        if any(r.get(a) is None for a in allocs):
            continue
        for a in allocs:
            logs[a].append(math.log(r[a]))
        rows.append([r["trace_label"], r["replay_threads"]]
                    + [f"{r[a] / 1e6:.3g}" for a in allocs]
                    + [f"{r['fancy'] / r['system']:.2f}×", f"{r['fancy'] / r['mimalloc']:.2f}×"])
    print("### Throughput (M ops/s, median over ok repetitions)\n")
    print(table(rows, ["trace", "threads"] + allocs + ["fancy/glibc", "fancy/mimalloc"]))
    geo = {a: math.exp(sum(v) / len(v)) for a, v in logs.items() if v}
    print(f"\nGeometric mean over {len(rows)} trace × threads: "
          + ", ".join(f"{a} {g / 1e6:.2f}M" for a, g in geo.items()))
    print(f"**fancy / mimalloc = {judged(geo['fancy'] / geo['mimalloc'], 1.0, True)}**\n")

    ring = t.filter((pl.col("trace_label") == "ring-buffer") & (pl.col("replay_threads") > 1))
    for r in ring.iter_rows(named=True):
        print(f"ring-buffer, {r['replay_threads']} threads: fancy / glibc = "
              f"**{judged(r['fancy'] / r['system'], 2.0, True)}**")

    m = wide(df, "peak_heap_rss_bytes")
    worst = []
    for r in m.iter_rows(named=True):
        peers = [r[p] for p in PEERS if r.get(p) is not None]
        if not peers or r.get("fancy") is None:
            continue
        low = min(peers)
        worst.append((over_lowest_peer(r["fancy"], low), r["trace_label"], r["replay_threads"],
                      r["fancy"], low))
    worst.sort(reverse=True)
    over = [w for w in worst if w[0] > 1.15]
    print(f"\n### Peak heap RSS, fancy over the lowest of {', '.join(PEERS)} (target ≤ 1.15)\n")
    print(f"{len(worst) - len(over)} of {len(worst)} trace × threads within 1.15×; the highest:\n")
    print(table([[w[1], w[2], f"{w[3] / 2**20:.2f}", f"{w[4] / 2**20:.2f}", fmt_ratio(w[0], 1.15)]
                 for w in worst[:12]],
                ["trace", "threads", "fancy MiB", "lowest peer MiB", "ratio"]))

    p99_section(load(root, "summary_latency.parquet"), allocs)

    col = next((c for c in ["retained_heap_rss_1s_bytes", "retained_heap_rss_100ms_bytes",
                            "retained_heap_rss_bytes"]
                if df.filter(pl.col(c).is_not_null()).height > 0), None)
    if col and "fancy-reclaim" in allocs:
        rt = wide(df, col)
        ok = bad = 0
        misses = []
        for r in rt.iter_rows(named=True):
            if r.get("fancy-reclaim") is None or r.get("system") is None:
                continue
            if r["fancy-reclaim"] <= r["system"]:
                ok += 1
            else:
                bad += 1
                misses.append([r["trace_label"], r["replay_threads"],
                               f"{r['fancy-reclaim'] / 2**20:.2f}", f"{r['system'] / 2**20:.2f}"])
        print(f"\n### Retained heap RSS ({col}), fancy-reclaim vs glibc (target ≤)\n")
        print(f"{ok} of {ok + bad} trace × threads at or below glibc's.")
        if misses:
            print()
            print(table(misses, ["trace", "threads", "fancy-reclaim MiB", "glibc MiB"]))


if __name__ == "__main__":
    main()
