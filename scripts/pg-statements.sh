#!/usr/bin/env bash
# Which statements the lab's PostgreSQL runs, how often and for how long, over a window of a run:
# pg_stat_statements, reset at the start of the window and read at its end, every database.
#
#   TXLAB_PG_STATEMENT_STATS=1 ./target/release/loadgen run --protocol twopc --scenario closed-32
#   scripts/pg-statements.sh 10        # in another shell, once it prints "measuring"
#
# The variable loads pg_stat_statements into the lab's cluster (it costs CPU per statement, so
# runs made with it are for profiling, not for publishing). Divide `calls` by the orders the run
# committed in the window to get statements per order.
set -euo pipefail
seconds=${1:-10}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pid=$(pgrep -f 'postgres .*-c port=' | head -1 || true)
[ -n "$pid" ] || { echo "no lab PostgreSQL is running" >&2; exit 1; }
port=$(tr '\0' '\n' < "/proc/$pid/cmdline" | sed -n 's/^port=//p' | head -1)
psql() { "$bin/psql" -h 127.0.0.1 -p "$port" -U lab -d postgres -X -q -v ON_ERROR_STOP=1 "$@"; }
psql -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" 2>/dev/null || {
    echo "pg_stat_statements is not loaded: start the run with TXLAB_PG_STATEMENT_STATS=1" >&2; exit 1; }
psql -c "SELECT pg_stat_statements_reset()" >/dev/null
sleep "$seconds"
echo "# pg_stat_statements over ${seconds} s, port $port, $(date -u +%FT%TZ)"
psql -P pager=off -c "
SELECT d.datname AS db, s.calls, round((s.calls / $seconds.0)::numeric) AS per_s,
       round(s.mean_exec_time::numeric, 3) AS mean_ms,
       round(s.total_exec_time::numeric / $seconds / 10, 1) AS pct_of_a_core,
       left(regexp_replace(s.query, '\s+', ' ', 'g'), 110) AS query
FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
ORDER BY s.calls DESC LIMIT 40"
