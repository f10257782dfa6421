#!/usr/bin/env bash
# CPU per thread name of one running process over a window: where a JVM (the broker) or a
# tokio process spends its time without a profiler. Threads are grouped by name with digits
# folded (`data-plane-kafka-request-handler-3` and `-5` count together).
#
#   scripts/threads.sh <process-pattern> [seconds]
#
# e.g. `scripts/threads.sh 'java.*kafka.Kafka' 5` while a run measures. This is how the broker's
# JIT compiler was found using half its CPU in the first seconds of a run (docs/profile.md).
set -euo pipefail
pattern=${1:?usage: scripts/threads.sh <process-pattern> [seconds]}
seconds=${2:-5}
# Not this script nor a subshell of it: their command lines hold the pattern too.
pid=$(pgrep -af "$pattern" | grep -v threads.sh | head -1 | cut -d' ' -f1 || true)
[ -n "$pid" ] || { echo "no running process matches $pattern" >&2; exit 1; }
shopt -s extglob
# No process forked per thread: the snapshot has to be quick next to the window.
snapshot() {
    local task stat name
    for task in /proc/"$pid"/task/*; do
        read -r stat < "$task/stat" 2>/dev/null || continue
        read -r name < "$task/comm" 2>/dev/null || continue
        # utime + stime: the 12th and 13th fields after the name's closing parenthesis.
        set -- ${stat##*) }
        echo "$(( ${12} + ${13} ))|${name//+([0-9])/#}"
    done
}
before=$(snapshot)
sleep "$seconds"
after=$(snapshot)
echo "CPU seconds per thread name over ${seconds}s, process $pid ($(tr '\0' ' ' < /proc/"$pid"/cmdline | cut -c1-80)):"
awk -F'|' -v s="$seconds" 'NR == FNR { b[$2] += $1; next } { a[$2] += $1 }
    END { for (n in a) { d = (a[n] - b[n]) / 100; if (d > 0) printf "%8.2f  %s\n", d, n; t += d }
          printf "%8.2f  total (%.2f cores)\n", t, t / s }' \
    <(echo "$before") <(echo "$after") | sort -rn | head -20
