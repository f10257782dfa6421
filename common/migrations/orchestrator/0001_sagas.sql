-- The saga orchestrator's state: one row per saga, its state machine's current state and the
-- order it carries, so that a restarted orchestrator resumes every non-terminal saga.
CREATE TABLE sagas (
    order_id     UUID        PRIMARY KEY,
    state        TEXT        NOT NULL,
    terminal     BOOLEAN     NOT NULL DEFAULT false,
    order_json   JSONB       NOT NULL,
    attempts     INTEGER     NOT NULL DEFAULT 0,
    reason       TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    deadline_at  TIMESTAMPTZ
);

CREATE INDEX sagas_open ON sagas (updated_at) WHERE NOT terminal;
