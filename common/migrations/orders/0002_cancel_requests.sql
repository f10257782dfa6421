-- Choreography's step timeouts: orders the order service asked to cancel because their saga
-- outlived its deadline, and when to ask again while they stay PENDING. Written only for late
-- sagas, so an ordinary order costs nothing here.
CREATE TABLE cancel_requests (
    order_id  UUID        PRIMARY KEY REFERENCES orders (id),
    attempts  INTEGER     NOT NULL CHECK (attempts > 0),
    next_at   TIMESTAMPTZ NOT NULL
);
