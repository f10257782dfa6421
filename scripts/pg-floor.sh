#!/usr/bin/env bash
# What PostgreSQL alone costs on this machine, with the lab's server settings: a round trip, a
# durable one-row commit and a prepared branch (UPDATE, PREPARE TRANSACTION, COMMIT PREPARED),
# driven by pgbench at 1, 8 and 32 clients. For each: transactions/s, mean latency and the CPU
# the whole machine spent per transaction (server and pgbench together, from /proc/stat).
# docs/profile.md uses these as the floor under each protocol's CPU per order.
#
#   scripts/pg-floor.sh [seconds-per-point]
#
# Starts a private cluster in a temporary directory on 127.0.0.1 and removes it afterwards.
set -euo pipefail
seconds=${1:-8}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$bin/pgbench" ] || { echo "pgbench not found under /usr/lib/postgresql/*/bin (apt-get install postgresql)" >&2; exit 1; }
dir=$(mktemp -d /tmp/pg-floor.XXXXXX)
port=$(( 56000 + RANDOM % 4000 ))
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$dir"
cleanup() { as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT

as_pg "$bin/initdb" -D "$dir/data" -A trust >/dev/null
# The settings common/src/env/postgres.rs gives the lab's cluster.
as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-p $port -c listen_addresses=127.0.0.1 \
    -c unix_socket_directories=$dir -c fsync=on -c synchronous_commit=on -c shared_buffers=256MB \
    -c max_connections=400 -c max_prepared_transactions=256" start >/dev/null
psql=(as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -q -v ON_ERROR_STOP=1)
"${psql[@]}" -c "CREATE TABLE wallets (id int PRIMARY KEY, balance_cents bigint NOT NULL);
    INSERT INTO wallets SELECT g, 100000000 FROM generate_series(1, 100000) g;"

cat > "$dir/round_trip.sql" <<'EOF'
SELECT 1;
EOF
cat > "$dir/commit.sql" <<'EOF'
\set id random(1, 100000)
BEGIN;
UPDATE wallets SET balance_cents = balance_cents - 1 WHERE id = :id;
COMMIT;
EOF
# A gid per transaction, as a 2PC branch has; simple protocol so the gid is substituted.
cat > "$dir/prepared_branch.sql" <<'EOF'
\set id random(1, 100000)
\set g random(1, 2000000000)
BEGIN;
UPDATE wallets SET balance_cents = balance_cents - 1 WHERE id = :id;
PREPARE TRANSACTION 'floor-:client_id-:g';
COMMIT PREPARED 'floor-:client_id-:g';
EOF
chown postgres "$dir"/*.sql 2>/dev/null || true

busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
hz=$(getconf CLK_TCK)
echo "# PostgreSQL floors: $(as_pg "$bin/postgres" --version), $(nproc) CPUs, ${seconds} s per point, $(date -u +%FT%TZ)"
echo
echo "| workload | clients | tx/s | mean latency (ms) | machine CPU ms per tx |"
echo "|---|---|---|---|---|"
for workload in round_trip commit prepared_branch; do
    for clients in 1 8 32; do
        before=$(busy_ticks)
        out=$(as_pg "$bin/pgbench" -h 127.0.0.1 -p "$port" -U postgres -n -M simple \
            -c "$clients" -j 2 -T "$seconds" -f "$dir/$workload.sql" postgres 2>&1)
        after=$(busy_ticks)
        tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
        lat=$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")
        [ -n "$tps" ] || { echo "pgbench failed for $workload at $clients clients:" >&2; echo "$out" >&2; exit 1; }
        cpu=$(awk -v t=$((after - before)) -v hz="$hz" -v s="$seconds" -v tps="$tps" \
            'BEGIN { printf "%.3f", (t / hz) * 1000 / (tps * s) }')
        printf '| %s | %d | %.0f | %s | %s |\n' "$workload" "$clients" "$tps" "$lat" "$cpu"
    done
done
