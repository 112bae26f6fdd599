-- Orders (idempotent by tag), fills, net positions, the trade log and the one-row system state.
-- Money is INTEGER paise; times are UTC as RFC 3339 text (sqlx's DateTime<Utc> encoding).

CREATE TABLE IF NOT EXISTS orders (
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
        CHECK (state IN ('submitting', 'open', 'filled', 'rejected', 'cancelled')),
    broker_order_id TEXT,
    avg_price       INTEGER,
    filled_at       TEXT,
    reason          TEXT,
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);

CREATE INDEX IF NOT EXISTS orders_created_at ON orders (created_at);
CREATE INDEX IF NOT EXISTS orders_state ON orders (state);

CREATE TABLE IF NOT EXISTS fills (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id     INTEGER NOT NULL REFERENCES orders (id),
    instrument   TEXT    NOT NULL,
    side         TEXT    NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity     INTEGER NOT NULL CHECK (quantity > 0),
    price        INTEGER NOT NULL,
    realized_pnl INTEGER NOT NULL,
    ts           TEXT    NOT NULL
);

CREATE INDEX IF NOT EXISTS fills_ts ON fills (ts);

CREATE TABLE IF NOT EXISTS positions (
    instrument   TEXT    NOT NULL,
    product      TEXT    NOT NULL,
    quantity     INTEGER NOT NULL,
    avg_price    INTEGER NOT NULL,
    realized_pnl INTEGER NOT NULL,
    stop         INTEGER,
    target       INTEGER,
    opened_at    TEXT    NOT NULL,
    updated_at   TEXT    NOT NULL,
    PRIMARY KEY (instrument, product)
);

CREATE TABLE IF NOT EXISTS trade_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    ts         TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    order_id   INTEGER,
    instrument TEXT,
    detail     TEXT    NOT NULL
);

CREATE INDEX IF NOT EXISTS trade_log_ts ON trade_log (ts);

CREATE TABLE IF NOT EXISTS system_state (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    halted        INTEGER NOT NULL DEFAULT 0,
    halted_reason TEXT,
    halted_at     TEXT,
    paused        INTEGER NOT NULL DEFAULT 0,
    updated_at    TEXT
);

INSERT INTO system_state (id, halted, paused) VALUES (1, 0, 0) ON CONFLICT (id) DO NOTHING;
