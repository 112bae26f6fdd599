-- Live orders on Kite: the order state 'unknown' (sent, answer lost: resolved by tag), the
-- quantity filled so far (partial fills), the reconciliation audit (every correction of the
-- store to the broker's truth) and the first live trading day (the capital ramp).
-- SQLite cannot change a CHECK in place: orders is rebuilt, and fills with it (its foreign key
-- names orders), keeping every id. Times are UTC RFC 3339 text; money INTEGER paise.

CREATE TABLE orders_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tag             TEXT    NOT NULL UNIQUE,
    instrument      TEXT    NOT NULL,
    side            TEXT    NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity        INTEGER NOT NULL CHECK (quantity > 0),
    product         TEXT    NOT NULL,
    purpose         TEXT    NOT NULL CHECK (purpose IN ('entry', 'exit')),
    proposal_id     INTEGER,
    request         TEXT    NOT NULL,
    state           TEXT    NOT NULL
        CHECK (state IN ('submitting', 'unknown', 'open', 'filled', 'rejected', 'cancelled')),
    broker_order_id TEXT,
    avg_price       INTEGER,
    filled_at       TEXT,
    reason          TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL,
    filled_quantity INTEGER NOT NULL DEFAULT 0 CHECK (filled_quantity >= 0)
);

INSERT INTO orders_new (id, tag, instrument, side, quantity, product, purpose, proposal_id,
    request, state, broker_order_id, avg_price, filled_at, reason, created_at, updated_at,
    filled_quantity)
SELECT id, tag, instrument, side, quantity, product, purpose, proposal_id, request, state,
    broker_order_id, avg_price, filled_at, reason, created_at, updated_at,
    CASE WHEN state = 'filled' THEN quantity ELSE 0 END
FROM orders;

CREATE TABLE fills_new (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id     INTEGER NOT NULL REFERENCES orders_new (id),
    instrument   TEXT    NOT NULL,
    side         TEXT    NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity     INTEGER NOT NULL CHECK (quantity > 0),
    price        INTEGER NOT NULL,
    realized_pnl INTEGER NOT NULL,
    ts           TEXT    NOT NULL
);

INSERT INTO fills_new (id, order_id, instrument, side, quantity, price, realized_pnl, ts)
SELECT id, order_id, instrument, side, quantity, price, realized_pnl, ts FROM fills;

DROP TABLE fills;
DROP TABLE orders;
ALTER TABLE orders_new RENAME TO orders;
ALTER TABLE fills_new RENAME TO fills;

CREATE INDEX IF NOT EXISTS orders_created_at ON orders (created_at);
CREATE INDEX IF NOT EXISTS orders_state ON orders (state);
CREATE INDEX IF NOT EXISTS orders_broker_order_id ON orders (broker_order_id);
CREATE INDEX IF NOT EXISTS fills_ts ON fills (ts);
CREATE INDEX IF NOT EXISTS fills_order_id ON fills (order_id);

CREATE TABLE IF NOT EXISTS reconciliations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    ts         TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    instrument TEXT,
    order_id   INTEGER,
    tag        TEXT,
    ours       TEXT    NOT NULL,
    broker     TEXT    NOT NULL,
    action     TEXT    NOT NULL
);

CREATE INDEX IF NOT EXISTS reconciliations_ts ON reconciliations (ts);

CREATE TABLE IF NOT EXISTS live_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    first_live_day TEXT    NOT NULL
);
