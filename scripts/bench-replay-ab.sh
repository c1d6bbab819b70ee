#!/usr/bin/env bash
# Two builds of `replay` side by side: did an engine change move the measured loop?
#
#   scripts/bench-replay-ab.sh OLD_REPLAY NEW_REPLAY [ROUNDS]     (default 7 rounds)
#
# For each synthetic trace below (made once with NEW's sibling `synth`) and each allocator, runs
# `replay -a ALLOC -r 1 --no-latency --retained-wait 0 --json` with OLD, then NEW, ROUNDS times
# (A B A B …, so machine drift hits both), takes the untimed pass's ops/s of each, and prints the
# median over rounds of NEW ÷ OLD per trace × allocator, and the median of those. The machine
# is shared: the load average before and after is printed beside the figures.
#
# Environment: TRACES="rl_small:1 json-tree:1 ring-buffer:2" (workload:threads),
#              ALLOCS="system fancy", OPS=400000 (ops of each trace).
set -euo pipefail
old=${1:?usage: scripts/bench-replay-ab.sh OLD_REPLAY NEW_REPLAY [ROUNDS]}
new=${2:?usage: scripts/bench-replay-ab.sh OLD_REPLAY NEW_REPLAY [ROUNDS]}
rounds=${3:-7}
for b in "$old" "$new"; do
  [ -x "$b" ] || { echo "bench-replay-ab: $b is not an executable replay" >&2; exit 2; }
done
synth="$(dirname "$new")/synth"
[ -x "$synth" ] || { echo "bench-replay-ab: $synth is missing: build it beside $new (cargo build --release -p traces)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "bench-replay-ab: python3 is needed to read the JSON" >&2; exit 2; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for t in ${TRACES:-rl_small:1 json-tree:1 ring-buffer:2}; do
  w=${t%%:*}; n=${t##*:}
  "$synth" "$w" --threads "$n" --ops "${OPS:-400000}" -o "$dir/$w-t$n.zst" -q
done
ops() { python3 -c 'import json,sys; print(json.load(sys.stdin)["runs"][0]["ops_per_sec"])'; }
printf '%-16s %-8s %8s  %s\n' trace alloc "new/old" "per-round ratios"
all=()
for f in "$dir"/*.zst; do
  for a in ${ALLOCS:-system fancy}; do
    ratios=()
    for _ in $(seq "$rounds"); do
      o=$("$old" -a "$a" -r 1 --no-latency --retained-wait 0 --json -q "$f" | ops)
      n=$("$new" -a "$a" -r 1 --no-latency --retained-wait 0 --json -q "$f" | ops)
      ratios+=("$(python3 -c "print($n / $o)")")
    done
    med=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}')
    all+=("$med")
    printf '%-16s %-8s %8.4f  %s\n' "$(basename "$f" .zst)" "$a" "$med" "$(printf '%.3f ' "${ratios[@]}")"
  done
done
printf 'median of the medians: %.4f (new ÷ old ops/s; 1 = no change)\n' \
  "$(printf '%s\n' "${all[@]}" | sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}')"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
