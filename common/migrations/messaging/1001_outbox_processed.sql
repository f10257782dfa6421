-- Exactly-once effects over at-least-once delivery (DESIGN §3, saga). A handler writes its
-- business change, a `processed_messages` row and its `outbox` rows in ONE local transaction.
-- Applied to every database a saga process owns; versions start at 1001 so they never collide
-- with a database's own migrations.
CREATE TABLE processed_messages (
    message_id    UUID        PRIMARY KEY,
    processed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE outbox (
    id            BIGSERIAL   PRIMARY KEY,
    message_id    UUID        NOT NULL UNIQUE,
    topic         TEXT        NOT NULL,
    msg_key       TEXT        NOT NULL,
    payload       BYTEA       NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at  TIMESTAMPTZ
);

CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
