-- Orders (idempotent by tag), fills, net positions, the trade log and the one-row system state.
-- Money is BIGINT paise; times are TIMESTAMPTZ (UTC).

CREATE TABLE IF NOT EXISTS orders (
    id              BIGSERIAL   PRIMARY KEY,
    tag             TEXT        NOT NULL UNIQUE,
    instrument      TEXT        NOT NULL,
    side            TEXT        NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity        BIGINT      NOT NULL CHECK (quantity > 0),
    product         TEXT        NOT NULL,
    purpose         TEXT        NOT NULL CHECK (purpose IN ('entry', 'exit')),
    proposal_id     BIGINT,
    request         TEXT        NOT NULL,
    state           TEXT        NOT NULL
        CHECK (state IN ('submitting', 'open', 'filled', 'rejected', 'cancelled')),
    broker_order_id TEXT,
    avg_price       BIGINT,
    filled_at       TIMESTAMPTZ,
    reason          TEXT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE INDEX IF NOT EXISTS orders_created_at ON orders (created_at);
CREATE INDEX IF NOT EXISTS orders_state ON orders (state);

CREATE TABLE IF NOT EXISTS fills (
    id           BIGSERIAL   PRIMARY KEY,
    order_id     BIGINT      NOT NULL REFERENCES orders (id),
    instrument   TEXT        NOT NULL,
    side         TEXT        NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity     BIGINT      NOT NULL CHECK (quantity > 0),
    price        BIGINT      NOT NULL,
    realized_pnl BIGINT      NOT NULL,
    ts           TIMESTAMPTZ NOT NULL
);

CREATE INDEX IF NOT EXISTS fills_ts ON fills (ts);

CREATE TABLE IF NOT EXISTS positions (
    instrument   TEXT        NOT NULL,
    product      TEXT        NOT NULL,
    quantity     BIGINT      NOT NULL,
    avg_price    BIGINT      NOT NULL,
    realized_pnl BIGINT      NOT NULL,
    stop         BIGINT,
    target       BIGINT,
    opened_at    TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (instrument, product)
);

CREATE TABLE IF NOT EXISTS trade_log (
    id         BIGSERIAL   PRIMARY KEY,
    ts         TIMESTAMPTZ NOT NULL,
    kind       TEXT        NOT NULL,
    order_id   BIGINT,
    instrument TEXT,
    detail     TEXT        NOT NULL
);

CREATE INDEX IF NOT EXISTS trade_log_ts ON trade_log (ts);

CREATE TABLE IF NOT EXISTS system_state (
    id            INTEGER     PRIMARY KEY CHECK (id = 1),
    halted        BOOLEAN     NOT NULL DEFAULT FALSE,
    halted_reason TEXT,
    halted_at     TIMESTAMPTZ,
    paused        BOOLEAN     NOT NULL DEFAULT FALSE,
    updated_at    TIMESTAMPTZ
);

INSERT INTO system_state (id, halted, paused) VALUES (1, FALSE, FALSE) ON CONFLICT (id) DO NOTHING;
