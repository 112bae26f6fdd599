-- Live orders on Kite: the order state 'unknown' (sent, answer lost: resolved by tag), the
-- quantity filled so far (partial fills), the reconciliation audit (every correction of the
-- store to the broker's truth) and the first live trading day (the capital ramp).
-- Money BIGINT paise; times TIMESTAMPTZ (UTC).

ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_state_check;
ALTER TABLE orders ADD CONSTRAINT orders_state_check
    CHECK (state IN ('submitting', 'unknown', 'open', 'filled', 'rejected', 'cancelled'));
ALTER TABLE orders ADD COLUMN IF NOT EXISTS filled_quantity BIGINT NOT NULL DEFAULT 0
    CHECK (filled_quantity >= 0);
UPDATE orders SET filled_quantity = quantity WHERE state = 'filled';

CREATE INDEX IF NOT EXISTS orders_broker_order_id ON orders (broker_order_id);
CREATE INDEX IF NOT EXISTS fills_order_id ON fills (order_id);

CREATE TABLE IF NOT EXISTS reconciliations (
    id         BIGSERIAL   PRIMARY KEY,
    ts         TIMESTAMPTZ NOT NULL,
    kind       TEXT        NOT NULL,
    instrument TEXT,
    order_id   BIGINT,
    tag        TEXT,
    ours       TEXT        NOT NULL,
    broker     TEXT        NOT NULL,
    action     TEXT        NOT NULL
);

CREATE INDEX IF NOT EXISTS reconciliations_ts ON reconciliations (ts);

CREATE TABLE IF NOT EXISTS live_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    first_live_day DATE    NOT NULL
);
