#!/usr/bin/env bash
# The analyze benchmark: 10 000 runs (5 workloads x 5 allocators x 4 thread counts x 100
# repetitions) and their time series, analysed with everything on (tables, plots, report) under
# each aggregation engine, interleaved (A B A B ...), REPEATS times each (default 5). Prints each
# run's wall time and peak RSS (`/usr/bin/time -f %M`) and the medians per engine. The data are
# generated once per size (examples/synthetic_sweep.rs, the tests' fixture builders, one result
# directory at a time) and kept.
#
#   analysis/bench/run.sh [REPEATS]
#   ALLOCLAB_BENCH_SIZE=100M analysis/bench/run.sh 3
#
# ALLOCLAB_BENCH_SIZE: 10M (default: 1 000 samples per run, 20 result directories) or 100M
# (10 000 samples per run, 200 result directories: ~100M time-series rows, a few GB on disk).
# ALLOCLAB_BENCH_ENGINES: the engines to time (default "in-memory streaming"; `analyze --engine`).
# ALLOCLAB_BENCH_DATA: where the data go (default $CARGO_TARGET_DIR/bench-data/<size>).
#
# Targets: 10M rows in under 10 s (issue 7); 100M rows within 2 GiB of peak RSS, and the
# streaming engine's time within 2x of the in-memory engine's on 10M rows (issue 18).
set -euo pipefail
repeats=${1:-5}
size=${ALLOCLAB_BENCH_SIZE:-10M}
engines=${ALLOCLAB_BENCH_ENGINES:-in-memory streaming}
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/alloclab/target}
case $size in
    10M) samples=997 dirs=20 ;;
    100M) samples=9997 dirs=200 ;;
    *) echo "ALLOCLAB_BENCH_SIZE=$size: expected 10M or 100M" >&2; exit 2 ;;
esac
cargo build -q --locked --profile analysis -p analysis --bins --example synthetic_sweep
bin=$CARGO_TARGET_DIR/analysis
data=${ALLOCLAB_BENCH_DATA:-$CARGO_TARGET_DIR/bench-data/$size}
if [ ! -f "$data/.complete" ]; then
    rm -rf "$data"
    "$bin/examples/synthetic_sweep" --out "$data" \
        --workloads rl_small,ring-buffer,kv-store,larson,mixed \
        --allocators system,jemalloc,mimalloc,tcmalloc,fancy \
        --threads 1,2,4,8 --repetitions 100 --samples "$samples" --dirs "$dirs"
    touch "$data/.complete"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
declare -A times rss
for i in $(seq "$repeats"); do
    for e in $engines; do
        /usr/bin/time -f '%e %M' -o "$out/time" \
            "$bin/analyze" "$data" -o "$out/report" --engine "$e" --timings \
            >/dev/null 2>"$out/stderr" || { cat "$out/stderr"; exit 1; }
        read -r t kib <"$out/time"
        times[$e]+="$t "
        rss[$e]+="$kib "
        printf 'run %d %-9s: %6.2f s  peak RSS %5d MiB  (%s)\n' "$i" "$e" "$t" "$((kib / 1024))" \
            "$(grep -o 'read+aggregate.*' "$out/stderr")"
    done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
for e in $engines; do
    mt=$(echo "${times[$e]}" | median)
    mr=$(echo "${rss[$e]}" | median)
    printf 'analyze --engine %s, 10 000 runs / %s time-series rows: median %.2f s, peak RSS %d MiB (%d runs)\n' \
        "$e" "$size" "$mt" "$((${mr%.*} / 1024))" "$repeats"
done
