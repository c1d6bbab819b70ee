#!/usr/bin/env bash
# Benchmark of the recorder (issue 3): the `py` and `churn` workloads run bare, under `record`
# and under Debian's heaptrack, interleaved (bare, record, heaptrack, bare, …) so that machine
# drift hits all alike. Prints medians, overhead ratios, bytes/event and the app thread's cost.
#
#   scripts/bench-recorder.sh [ROUNDS]        (default 5; needs gcc, /usr/bin/python3, heaptrack)
#
# py:    PYTHONMALLOC=malloc /usr/bin/python3 recorder/bench/py_dict.py  (a 2M-entry dict of
#        strings, ~28M malloc-family calls)
# churn: recorder/bench/churn.c, 10M free-then-malloc of 8 B - 32 KiB over 4096 slots (20M
#        events); it prints its main thread's CPU time, from which the app-thread cost per event
#        is computed (the writer thread's work is not in it).
set -euo pipefail
ROUNDS=${1:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
for tool in gcc /usr/bin/python3 heaptrack; do
    command -v "$tool" >/dev/null || { echo "bench-recorder: $tool is missing (apt-get install $(cat recorder/ci-deps.txt | tr '\n' ' '))" >&2; exit 1; }
done
cargo build --release -q -p recorder
RECORD=$CARGO_TARGET_DIR/release/record
WORK=$(mktemp -d /tmp/bench-recorder.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
gcc -O2 -fno-builtin recorder/bench/churn.c -o "$WORK/churn"

# Exported rather than passed with env(1): heaptrack follows no exec, and env would be the
# traced program.
export PYTHONMALLOC=malloc
py=(/usr/bin/python3 "$ROOT/recorder/bench/py_dict.py")
churn=("$WORK/churn")

now() { date +%s.%N; }
# run NAME MODE CMD…: appends "wall_s app_cpu_ms bytes events" to $WORK/NAME.MODE
run() {
    local name=$1 mode=$2; shift 2
    local dir=$WORK/out err=$WORK/err t0 t1 bytes=0 events=0 cpu=0
    rm -rf "$dir"; mkdir -p "$dir"
    t0=$(now)
    case $mode in
        bare) "$@" >/dev/null 2>"$err" ;;
        record) "$RECORD" -o "$dir/$name.trace.zst" -- "$@" >/dev/null 2>"$err" ;;
        heaptrack) heaptrack -o "$dir/$name" "$@" >/dev/null 2>"$err" ;;
    esac
    t1=$(now)
    [ "$mode" != bare ] && bytes=$(cat "$dir"/* | wc -c)
    [ "$mode" = record ] && events=$(sed -n 's/^record: \([0-9]*\) events.*/\1/p' "$err")
    cpu=$(sed -n 's/^churn: main thread cpu \([0-9]*\) ms/\1/p' "$err")
    echo "$(echo "$t1 - $t0" | bc) ${cpu:-0} $bytes $events" >> "$WORK/$name.$mode"
}

for r in $(seq "$ROUNDS"); do
    for mode in bare record heaptrack; do run py $mode "${py[@]}"; done
    for mode in bare record heaptrack; do run churn $mode "${churn[@]}"; done
    echo "round $r of $ROUNDS done" >&2
done

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
col() { awk -v c="$1" '{print $c}' "$2" | median; }
printf '\n%-6s %-10s %9s %8s %12s %12s %12s\n' workload mode "wall s" ratio "bytes/event" "app ns/ev" "events"
for name in py churn; do
    bare=$(col 1 "$WORK/$name.bare")
    events=$(col 4 "$WORK/$name.record")
    bare_cpu=$(col 2 "$WORK/$name.bare")
    for mode in bare record heaptrack; do
        wall=$(col 1 "$WORK/$name.$mode")
        bytes=$(col 3 "$WORK/$name.$mode")
        cpu=$(col 2 "$WORK/$name.$mode")
        bpe=-; appns=-
        [ "$mode" != bare ] && bpe=$(echo "scale=2; $bytes / $events" | bc)
        if [ "$name" = churn ] && [ "$mode" != bare ]; then
            appns=$(echo "scale=1; ($cpu - $bare_cpu) * 1000000 / $events" | bc)
        fi
        printf '%-6s %-10s %9.3f %7.2fx %12s %12s %12s\n' "$name" "$mode" "$wall" \
            "$(echo "scale=3; $wall / $bare" | bc)" "$bpe" "$appns" "$events"
    done
done
echo "(medians of $ROUNDS interleaved rounds; app ns/ev: extra CPU time of churn's own thread per"
echo " recorded event; heaptrack bytes/event: its file size over the same event count)"
