#!/usr/bin/env bash
# Where one lab process spends its CPU while a run loads it: perf samples with call graphs
# (cpu-clock: a VM has no hardware counters), the hottest symbols, and a flame graph.
#
#   scripts/profile.sh <process-name> [seconds] [out-dir]
#
# Start a run in one shell, e.g.
#   ./target/release/loadgen run --protocol saga-orchestrated --scenario closed-32
# and, once it prints "measuring", in another:
#   scripts/profile.sh saga-orchestrator 10
# <process-name> matches the binary (`coordinator`, `participant`, `saga-orchestrator`,
# `saga-service`, `loadgen`, `java` for the broker, `postgres`); with several matches (the
# three saga services) each is recorded. Needs perf (Debian: linux-perf) and, for the SVG,
# inferno (`cargo install inferno`); without inferno the text report is still written.
set -euo pipefail

name=${1:?usage: scripts/profile.sh <process-name> [seconds] [out-dir]}
seconds=${2:-10}
out=${3:-results/runs/profile-$(date -u +%Y%m%dT%H%M%SZ)}
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
mapfile -t pids < <(pgrep -f "(^|/)$name( |$)" || true)
[ ${#pids[@]} -gt 0 ] || { echo "no running process named $name" >&2; exit 1; }
mkdir -p "$out"

for pid in "${pids[@]}"; do
    label="$name-$pid"
    args=$(tr '\0' ' ' < "/proc/$pid/cmdline" | cut -c1-300)
    echo "recording $label for ${seconds}s: $args" >&2
    perf record -e cpu-clock -F 999 -g --call-graph dwarf,16384 -p "$pid" \
        -o "$out/$label.perf.data" -- sleep "$seconds" 2>"$out/$label.record.log"
    {
        echo "# $label: $args"
        echo "# perf record -e cpu-clock -F 999 -g --call-graph dwarf -p $pid -- sleep $seconds"
        perf report -i "$out/$label.perf.data" --stdio --no-children --sort symbol \
            --percent-limit 1 2>/dev/null | grep -E '^ +[0-9.]+%' | head -40
    } > "$out/$label.top.txt"
    if command -v inferno-collapse-perf >/dev/null; then
        perf script -i "$out/$label.perf.data" 2>/dev/null | inferno-collapse-perf \
            > "$out/$label.folded"
        inferno-flamegraph --title "$label" < "$out/$label.folded" > "$out/$label.svg"
    fi
    echo "$out/$label.top.txt" >&2
done
