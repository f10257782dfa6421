-- The inventory service's own state. A reservation row exists once its units left `available`.
CREATE TABLE stock (
    sku          INTEGER PRIMARY KEY,
    available    INTEGER NOT NULL CHECK (available >= 0),
    price_cents  BIGINT  NOT NULL CHECK (price_cents > 0)
);

CREATE TABLE reservations (
    order_id    UUID        NOT NULL,
    sku         INTEGER     NOT NULL REFERENCES stock (sku),
    qty         INTEGER     NOT NULL CHECK (qty > 0),
    status      TEXT        NOT NULL CHECK (status IN ('RESERVED', 'COMMITTED', 'RELEASED')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (order_id, sku)
);
