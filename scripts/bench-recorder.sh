#!/usr/bin/env bash
# Benchmark of the recorder (issue 3): the `py` and `churn` workloads run bare, under `record`
# and under Debian's heaptrack, interleaved (bare, record, heaptrack, bare, …) so that machine
# drift hits all alike. Prints medians, overhead ratios, bytes/event, the program thread's and
# the writer thread's cost per event, the load average before and after, and a verdict for each
# of record's targets, compared at full precision (printed with the digits that show it).
#
#   scripts/bench-recorder.sh [ROUNDS]        (default 5; needs gcc, /usr/bin/python3, heaptrack, bc)
#
# Environment:
#   BASELINE=/path/to/record   also run this other build of `record` (its library beside it) as
#                              mode `baseline`, interleaved with the others: before/after figures
#                              from one run
#   HEAPTRACK=0                leave heaptrack out (it takes most of the time)
#   MODES_EXTRA="name:VAR=v …" more `record` modes with extra environment, e.g.
#                              "mono:ALLOCLAB_CLOCK=monotonic" (space-separated list)
#   WORKLOADS="py churn mt"    the workloads to run (default these three; `osc` is opt-in)
#   MT_THREADS="1 2 4"         mt's thread counts; MT_N=1000000 its iterations per thread
#
# py:    PYTHONMALLOC=malloc /usr/bin/python3 recorder/bench/py_dict.py  (a 2M-entry dict of
#        strings, ~24M malloc-family calls)
# churn: recorder/bench/churn.c, 10M free-then-malloc of 8 B - 32 KiB over 4096 slots (20M
#        events); it prints its main thread's CPU time.
# mt:    recorder/bench/mt_churn.c, churn's loop on each of 1, 2 and 4 threads (MT_N iterations
#        each: 2 MT_N + 8192 events per thread); it prints the sum of its threads' CPU times. With
#        several recording threads every stamp is an ordered `rdtscp` (recorder/README.md, Clock).
#        The machine this was written on has 2 cores: 4 threads (+ the writer) oversubscribe it.
# osc:   recorder/bench/os_churn.c, OSC_N (200000) rounds of mmap + madvise + munmap (3 OSC_N OS
#        calls, no malloc): the OS call hooks, with MODES_EXTRA="os:ALLOCLAB_OS_CALLS=1"
#        (recorded) against `record` (the hooks only forward) and bare. Its app ns/ev is per OS
#        call made (3 OSC_N), in every mode; its wrt ns/ev and bytes/event per recorded event.
# app ns/ev: extra CPU time of the program's own threads per recorded event (churn: its main
#   thread's CPU time; mt: the sum of its worker threads'; py: the run's user+sys time minus the writer thread's, both single-
#   threaded programs). writer ns/ev: the writer thread's CPU time (recorder.writer_cpu_ns) per
#   event. waits: time the program's thread waited for room in its ring (recorder.app_wait_ns).
set -euo pipefail
ROUNDS=${1:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
for tool in gcc /usr/bin/python3 bc; do
    command -v "$tool" >/dev/null || { echo "bench-recorder: $tool is missing (apt-get install $(cat recorder/ci-deps.txt | tr '\n' ' '))" >&2; exit 1; }
done
MODES=(bare record)
[ -n "${BASELINE:-}" ] && MODES+=(baseline)
for m in ${MODES_EXTRA:-}; do MODES+=("x-${m%%:*}"); done
if [ "${HEAPTRACK:-1}" != 0 ]; then
    command -v heaptrack >/dev/null || { echo "bench-recorder: heaptrack is missing (apt-get install heaptrack, or HEAPTRACK=0)" >&2; exit 1; }
    MODES+=(heaptrack)
fi
cargo build --release -q -p recorder -p traces
RECORD=$CARGO_TARGET_DIR/release/record
INSPECT=$CARGO_TARGET_DIR/release/inspect
WORK=$(mktemp -d /tmp/bench-recorder.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
gcc -O2 -fno-builtin recorder/bench/churn.c -o "$WORK/churn"
gcc -O2 -fno-builtin recorder/bench/mt_churn.c -o "$WORK/mt_churn" -lpthread
gcc -O2 recorder/bench/os_churn.c -o "$WORK/os_churn"
WORKLOADS=${WORKLOADS:-py churn mt}
MT_THREADS=${MT_THREADS:-1 2 4}
MT_N=${MT_N:-1000000}
has() { case " $WORKLOADS " in *" $1 "*) return 0 ;; esac; return 1; }

# Exported rather than passed with env(1): heaptrack follows no exec, and env would be the
# traced program.
export PYTHONMALLOC=malloc
py=(/usr/bin/python3 "$ROOT/recorder/bench/py_dict.py")
churn=("$WORK/churn")
OSC_N=${OSC_N:-200000}
osc=("$WORK/os_churn" "$OSC_N")

now() { date +%s.%N; }
# CPU time (user + sys, s) of this shell's finished children so far (`times` runs in this
# shell, not in a $(…) subshell, whose counters would start at 0).
child_cpu() {
    times > "$WORK/times"
    sed -n 2p "$WORK/times" | awk '{ split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.3f", u[1] * 60 + u[2] + s[1] * 60 + s[2] }'
}
# extra_env MODE: the extra environment of an x-NAME mode.
extra_env() {
    local m
    for m in ${MODES_EXTRA:-}; do
        [ "x-${m%%:*}" = "$1" ] && { echo "${m#*:}" | tr ':' ' '; return; }
    done
}
# run NAME MODE CMD…: appends "wall_s cpu_s app_cpu_ms bytes events writer_ms wait_ms" to
# $WORK/NAME.MODE
run() {
    local name=$1 mode=$2; shift 2
    local dir=$WORK/out err=$WORK/err t0 t1 c0 c1 bytes=0 events=0 cpu writer=0 wait=0
    rm -rf "$dir"; mkdir -p "$dir"
    child_cpu > "$WORK/c0"; t0=$(now)
    case $mode in
        bare) "$@" >/dev/null 2>"$err" ;;
        record) "$RECORD" -o "$dir/$name.trace.zst" -- "$@" >/dev/null 2>"$err" ;;
        baseline) "$BASELINE" -o "$dir/$name.trace.zst" -- "$@" >/dev/null 2>"$err" ;;
        x-*) env $(extra_env "$mode") "$RECORD" -o "$dir/$name.trace.zst" -- "$@" >/dev/null 2>"$err" ;;
        heaptrack) heaptrack -o "$dir/$name" "$@" >/dev/null 2>"$err" ;;
    esac
    t1=$(now); child_cpu > "$WORK/c1"; c0=$(cat "$WORK/c0"); c1=$(cat "$WORK/c1")
    [ "$mode" != bare ] && bytes=$(cat "$dir"/* | wc -c)
    if [ "$mode" != bare ] && [ "$mode" != heaptrack ]; then
        read -r events writer wait < <("$INSPECT" --json "$dir/$name.trace.zst" | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin); e = dict(d["trailer"]["extra"])
print(d["events"], int(e["recorder.writer_cpu_ns"]) / 1e6, int(e["recorder.app_wait_ns"]) / 1e6)')
    fi
    cpu=$(sed -n 's/^\(churn: main thread\|mt_churn: worker threads\|os_churn: main thread\) cpu \([0-9]*\) ms/\2/p' "$err")
    echo "$(echo "$t1 - $t0" | bc) $(echo "$c1 - $c0" | bc) ${cpu:-0} $bytes $events $writer $wait" >> "$WORK/$name.$mode"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for r in $(seq "$ROUNDS"); do
    if has py; then for mode in "${MODES[@]}"; do run py "$mode" "${py[@]}"; done; fi
    if has churn; then for mode in "${MODES[@]}"; do run churn "$mode" "${churn[@]}"; done; fi
    if has osc; then for mode in "${MODES[@]}"; do run osc "$mode" "${osc[@]}"; done; fi
    if has mt; then
        for t in $MT_THREADS; do
            for mode in "${MODES[@]}"; do
                [ "$mode" = heaptrack ] || run "mt$t" "$mode" "$WORK/mt_churn" "$t" "$MT_N"
            done
        done
    fi
    echo "round $r of $ROUNDS done (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
done

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
col() { awk -v c="$1" '{print $c}' "$2" | median; }
# calc EXPR: floating-point arithmetic at full (double) precision, printed with 17 digits.
calc() { awk "BEGIN { printf \"%.17g\n\", $1 }"; }
# verdict LABEL VALUE OP TARGET: one line comparing VALUE with TARGET at full precision; VALUE is
# printed with as many decimals as it takes (2 at least) for the printed figure to fall on the
# same side of the target as the exact one (1.3040 > 1.3, never "1.30 … missed").
verdicts=()
verdict() {
    verdicts+=("$(awk -v l="$1" -v v="$2" -v op="$3" -v t="$4" 'BEGIN {
        ok = (op == "<=") ? (v <= t) : (v >= t)
        for (d = 2; d <= 9; d++) {
            f = sprintf("%." d "f", v)
            if (((op == "<=") ? (f + 0 <= t) : (f + 0 >= t)) == ok) break
        }
        printf "  %-26s %12s  %s %-4s  %s\n", l, f, (op == "<=" ? "<=" : ">="), t, (ok ? "met" : "MISSED")
    }')")
}
printf '\n%-6s %-10s %9s %8s %12s %10s %10s %9s %12s\n' workload mode "wall s" ratio "bytes/event" "app ns/ev" "wrt ns/ev" "waits ms" "events"
names=()
has py && names+=(py)
has churn && names+=(churn)
has osc && names+=(osc)
if has mt; then for t in $MT_THREADS; do names+=("mt$t"); done; fi
for name in "${names[@]}"; do
    bare=$(col 1 "$WORK/$name.bare")
    bare_cpu=$(col 2 "$WORK/$name.bare")
    bare_app=$(col 3 "$WORK/$name.bare")
    events=$(col 5 "$WORK/$name.record")
    for mode in "${MODES[@]}"; do
        f=$WORK/$name.$mode
        [ -f "$f" ] || continue
        wall=$(col 1 "$f")
        ratio=$(calc "$wall / $bare")
        bpe=-; appns=-; wns=-; waits=-; ev=$events; bpe_full=; appns_full=
        if [ "$mode" != bare ]; then
            den=$events
            # osc records few events without --os-calls: per its own recorded events.
            [ "$name" = osc ] && [ "$mode" != heaptrack ] && den=$(col 5 "$f")
            bpe_full=$(calc "$(col 4 "$f") / $den")
            bpe=$(printf '%.2f' "$bpe_full")
        fi
        if [ "$mode" != bare ] && [ "$mode" != heaptrack ]; then
            ev=$(col 5 "$f")
            wns=$(printf '%.1f' "$(calc "$(col 6 "$f") * 1000000 / $ev")")
            waits=$(printf '%.0f' "$(col 7 "$f")")
            if [ "$name" = osc ]; then
                appns_full=$(calc "($(col 3 "$f") - $bare_app) * 1000000 / (3 * $OSC_N)")
            elif [ "$name" != py ]; then
                appns_full=$(calc "($(col 3 "$f") - $bare_app) * 1000000 / $ev")
            else
                # Per run: user+sys minus the writer's CPU, then the median.
                appns_full=$(awk -v b="$bare_cpu" -v ev="$ev" '{ printf "%.17g\n", (($2 - $6 / 1000) - b) * 1e9 / ev }' "$f" | median)
            fi
            appns=$(printf '%.1f' "$appns_full")
        elif [ "$mode" = heaptrack ] && [ "$name" = churn ]; then
            appns=$(printf '%.1f' "$(calc "($(col 3 "$f") - $bare_app) * 1000000 / $events")")
        fi
        printf '%-6s %-10s %9.3f %7.3fx %12s %10s %10s %9s %12s\n' "$name" "$mode" "$wall" \
            "$ratio" "$bpe" "$appns" "$wns" "$waits" "$ev"
        if [ "$mode" = record ]; then
            # The recorder's targets (recorder/README.md).
            if [ "$name" = py ]; then
                verdict "py wall / bare" "$ratio" "<=" 1.3
                verdict "py bytes/event" "$bpe_full" "<=" 1.5
            elif [ "$name" = churn ]; then
                verdict "churn wall / bare" "$ratio" "<=" 2
                verdict "churn bytes/event" "$bpe_full" "<=" 3.5
            fi
            [ "$name" = osc ] || verdict "$name app ns/event" "$appns_full" "<=" 25
        fi
    done
done
echo "(medians of $ROUNDS interleaved rounds; load average after: $(cut -d' ' -f1-3 /proc/loadavg);"
echo " heaptrack bytes/event: its file size over the recorder's event count; its app ns/ev: churn's"
echo " main thread only; mtN: mt_churn on N threads, app ns/ev from the sum of its threads' CPU;"
echo " $(nproc) CPUs here: mt threads + the writer beyond that oversubscribe them)"
echo
echo "targets of record (medians, compared at full precision; printed with the digits that show it):"
printf '%s\n' "${verdicts[@]}"
