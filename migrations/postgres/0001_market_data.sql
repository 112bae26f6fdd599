-- Market data: Kite's instruments dump, OHLCV candles and the bookkeeping of fetched ranges.
-- `candles` becomes a TimescaleDB hypertable at start-up when the extension is available
-- (see src/store/mod.rs); this migration only creates plain tables so it runs everywhere.

CREATE TABLE IF NOT EXISTS instruments (
    instrument_token BIGINT PRIMARY KEY,
    exchange_token   BIGINT           NOT NULL,
    tradingsymbol    TEXT             NOT NULL,
    name             TEXT             NOT NULL,
    last_price       DOUBLE PRECISION NOT NULL,
    expiry           DATE,
    strike           DOUBLE PRECISION NOT NULL,
    tick_size        DOUBLE PRECISION NOT NULL,
    lot_size         BIGINT           NOT NULL,
    instrument_type  TEXT             NOT NULL,
    segment          TEXT             NOT NULL,
    exchange         TEXT             NOT NULL
);

CREATE INDEX IF NOT EXISTS instruments_exchange_tradingsymbol
    ON instruments (exchange, tradingsymbol);

CREATE TABLE IF NOT EXISTS candles (
    instrument TEXT             NOT NULL,
    interval   TEXT             NOT NULL,
    ts         TIMESTAMPTZ      NOT NULL,
    open       DOUBLE PRECISION NOT NULL,
    high       DOUBLE PRECISION NOT NULL,
    low        DOUBLE PRECISION NOT NULL,
    close      DOUBLE PRECISION NOT NULL,
    volume     BIGINT           NOT NULL CHECK (volume >= 0),
    oi         BIGINT,
    PRIMARY KEY (instrument, interval, ts)
);

CREATE TABLE IF NOT EXISTS fetched_ranges (
    instrument TEXT NOT NULL,
    interval   TEXT NOT NULL,
    from_date  DATE NOT NULL,
    to_date    DATE NOT NULL,
    PRIMARY KEY (instrument, interval, from_date),
    CHECK (from_date <= to_date)
);
