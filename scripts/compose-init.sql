-- Run once by the postgres image on first start, i.e. on an empty data volume (mounted into
-- /docker-entrypoint-initdb.d by docker-compose.yml). After changing it: docker compose down -v.
-- One set of the lab's five databases per protocol (deploy/compose.toml names them), each
-- migrated and seeded by the load generator before that protocol is measured; plus a scratch
-- database for the probe's floors.

-- Two-phase commit (twopc_orchestrator is unused by 2PC, but every set has all five).
CREATE DATABASE twopc_orders;
CREATE DATABASE twopc_payments;
CREATE DATABASE twopc_inventory;
CREATE DATABASE twopc_coordinator;
CREATE DATABASE twopc_orchestrator;

-- Orchestrated saga (orch_coordinator is unused).
CREATE DATABASE orch_orders;
CREATE DATABASE orch_payments;
CREATE DATABASE orch_inventory;
CREATE DATABASE orch_coordinator;
CREATE DATABASE orch_orchestrator;

-- Choreographed saga (choreo_coordinator and choreo_orchestrator are unused).
CREATE DATABASE choreo_orders;
CREATE DATABASE choreo_payments;
CREATE DATABASE choreo_inventory;
CREATE DATABASE choreo_coordinator;
CREATE DATABASE choreo_orchestrator;

-- The probe (floors: PostgreSQL commit, PREPARE + COMMIT PREPARED) creates its table here.
CREATE DATABASE probe;
