-- The payment service's own state. A payment row exists once the amount left the wallet.
CREATE TABLE wallets (
    customer_id    INTEGER PRIMARY KEY,
    balance_cents  BIGINT  NOT NULL CHECK (balance_cents >= 0)
);

CREATE TABLE payments (
    order_id      UUID        PRIMARY KEY,
    customer_id   INTEGER     NOT NULL REFERENCES wallets (customer_id),
    amount_cents  BIGINT      NOT NULL CHECK (amount_cents > 0),
    status        TEXT        NOT NULL CHECK (status IN ('CAPTURED', 'REFUNDED')),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
