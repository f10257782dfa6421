-- The 2PC coordinator's durable decision log, presumed abort: only COMMIT decisions are written,
-- forced before any Commit is sent; a missing row means ABORT. `completed_at` is the lazily
-- written END record: every participant acknowledged.
CREATE TABLE decisions (
    gid           TEXT        PRIMARY KEY,
    order_id      UUID        NOT NULL,
    participants  TEXT[]      NOT NULL,
    decided_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at  TIMESTAMPTZ
);

CREATE INDEX decisions_unfinished ON decisions (decided_at) WHERE completed_at IS NULL;
