-- Choreography's cancel at the pivot: orders whose saga was cancelled before any charge. A charge
-- that arrives later for one of them is refused, so a cancelled order can never be charged.
CREATE TABLE voided_payments (
    order_id   UUID        PRIMARY KEY,
    voided_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
