-- Market data: Kite's instruments dump, OHLCV candles and the bookkeeping of fetched ranges.

CREATE TABLE IF NOT EXISTS instruments (
    instrument_token INTEGER PRIMARY KEY,
    exchange_token   INTEGER NOT NULL,
    tradingsymbol    TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    last_price       REAL    NOT NULL,
    expiry           TEXT,
    strike           REAL    NOT NULL,
    tick_size        REAL    NOT NULL,
    lot_size         INTEGER NOT NULL,
    instrument_type  TEXT    NOT NULL,
    segment          TEXT    NOT NULL,
    exchange         TEXT    NOT NULL
);

CREATE INDEX IF NOT EXISTS instruments_exchange_tradingsymbol
    ON instruments (exchange, tradingsymbol);

-- One row per (instrument, interval) ever written: candles key on its integer id instead of two
-- TEXT columns (smaller rows and key, integer comparisons). Rows are never deleted, so
-- candles.series_id has no FOREIGN KEY (a per-row check would cost bulk imports for nothing).
CREATE TABLE IF NOT EXISTS series (
    id         INTEGER PRIMARY KEY,
    instrument TEXT NOT NULL,
    interval   TEXT NOT NULL,
    UNIQUE (instrument, interval)
);

-- ts is UTC in whole seconds since 1970 (INTEGER): half the key size of RFC 3339 text and no
-- date parsing on reads; sqlx decodes it straight into DateTime<Utc>.
-- WITHOUT ROWID clusters rows by (series_id, ts): one series' range is one B-tree walk.
CREATE TABLE IF NOT EXISTS candles (
    series_id  INTEGER NOT NULL,
    ts         INTEGER NOT NULL,
    open       REAL    NOT NULL,
    high       REAL    NOT NULL,
    low        REAL    NOT NULL,
    close      REAL    NOT NULL,
    volume     INTEGER NOT NULL CHECK (volume >= 0),
    oi         INTEGER,
    PRIMARY KEY (series_id, ts)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS fetched_ranges (
    instrument TEXT NOT NULL,
    interval   TEXT NOT NULL,
    from_date  TEXT NOT NULL,
    to_date    TEXT NOT NULL,
    PRIMARY KEY (instrument, interval, from_date),
    CHECK (from_date <= to_date)
);
