-- Run once by the postgres image on first start (mounted into /docker-entrypoint-initdb.d).
-- One database per lab service.
CREATE DATABASE orders;
CREATE DATABASE payments;
CREATE DATABASE inventory;
CREATE DATABASE coordinator;
CREATE DATABASE orchestrator;
