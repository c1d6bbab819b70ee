#!/usr/bin/env bash
# The analyze benchmark: 10 000 runs and 10M time-series rows (20 result directories of 500
# runs; 5 workloads x 5 allocators x 4 thread counts x 100 repetitions; 1 000 samples per run),
# analysed REPEATS times (default 5) with everything on (tables, plots, report). Prints each
# wall time and the median. The data are generated once (examples/synthetic_sweep.rs, the
# tests' fixture builders) and kept.
#
#   analysis/bench/run.sh [REPEATS]
#
# Target (issue 7): under 10 s on the 2-core lab machine.
set -euo pipefail
repeats=${1:-5}
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/alloclab/target}
cargo build -q --locked --profile analysis -p analysis --bins --example synthetic_sweep
bin=$CARGO_TARGET_DIR/analysis
data=${ALLOCLAB_BENCH_DATA:-$CARGO_TARGET_DIR/bench-data}
if [ ! -f "$data/.complete" ]; then
    rm -rf "$data"
    "$bin/examples/synthetic_sweep" --out "$data" \
        --workloads rl_small,ring-buffer,kv-store,larson,mixed \
        --allocators system,jemalloc,mimalloc,tcmalloc,fancy \
        --threads 1,2,4,8 --repetitions 100 --samples 997 --dirs 20
    touch "$data/.complete"
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
times=()
for i in $(seq "$repeats"); do
    start=$(date +%s.%N)
    "$bin/analyze" "$data" -o "$out/report" --timings >/dev/null 2>"$out/stderr" || {
        cat "$out/stderr"; exit 1; }
    end=$(date +%s.%N)
    t=$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')
    times+=("$t")
    printf 'run %d: %.2f s  (%s)\n' "$i" "$t" "$(grep -o 'read+aggregate.*' "$out/stderr")"
done
median=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
printf 'analyze, 10 000 runs / 10M time-series rows: median %.2f s of %d runs (target < 10 s)\n' "$median" "$repeats"
