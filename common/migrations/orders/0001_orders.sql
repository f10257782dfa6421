-- The order service's own state.
CREATE TABLE orders (
    id            UUID        PRIMARY KEY,
    customer_id   INTEGER     NOT NULL,
    amount_cents  BIGINT      NOT NULL CHECK (amount_cents > 0),
    status        TEXT        NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    reason        TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE order_lines (
    order_id          UUID    NOT NULL REFERENCES orders (id),
    sku               INTEGER NOT NULL,
    qty               INTEGER NOT NULL CHECK (qty > 0),
    unit_price_cents  BIGINT  NOT NULL CHECK (unit_price_cents > 0),
    PRIMARY KEY (order_id, sku)
);

CREATE INDEX orders_pending ON orders (created_at) WHERE status = 'PENDING';
