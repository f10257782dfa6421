#!/bin/sh
# Run once by the postgres image on an empty data volume (mounted into
# /docker-entrypoint-initdb.d by deploy/replicated/docker-compose.yml): this server's store
# (TXLAB_STORE: orders, payments, inventory, coordinator or orchestrator) for each protocol,
# e.g. twopc_payments, orch_payments, choreo_payments; the orders server also holds the probe's
# scratch database. Each is migrated and seeded by the load generator before it is measured.
set -eu
: "${TXLAB_STORE:?set TXLAB_STORE to the store this server holds}"
for protocol in twopc orch choreo; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" -c "CREATE DATABASE ${protocol}_${TXLAB_STORE}"
done
if [ "$TXLAB_STORE" = orders ]; then
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" -c "CREATE DATABASE probe"
fi
