-- Trade proposals (pending -> approved | rejected | expired; approved -> executed | vetoed | failed)
-- and the record of each scan run. Prices are integer paise; times are UTC RFC 3339 text.

CREATE TABLE IF NOT EXISTS proposals (
    id          INTEGER PRIMARY KEY,
    instrument  TEXT    NOT NULL,
    side        TEXT    NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    entry       INTEGER NOT NULL CHECK (entry > 0),
    stop        INTEGER NOT NULL CHECK (stop > 0),
    target      INTEGER NOT NULL CHECK (target > 0),
    product     TEXT    NOT NULL CHECK (product IN ('MIS', 'CNC')),
    confidence  REAL    NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    rationale   TEXT    NOT NULL,
    status      TEXT    NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'approved', 'rejected', 'expired', 'executed', 'vetoed', 'failed')),
    created_at  TEXT    NOT NULL,
    expires_at  TEXT    NOT NULL,
    chart_path  TEXT,
    message_id  INTEGER,
    decided_at  TEXT,
    decided_by  INTEGER,
    outcome     TEXT,
    updated_at  TEXT    NOT NULL
);

-- At most one pending proposal per instrument, even when two scans race.
CREATE UNIQUE INDEX IF NOT EXISTS proposals_one_pending_per_instrument
    ON proposals (instrument) WHERE status = 'pending';

-- The expiry sweep reads pending proposals by expiry.
CREATE INDEX IF NOT EXISTS proposals_pending_expiry
    ON proposals (expires_at) WHERE status = 'pending';

CREATE TABLE IF NOT EXISTS scan_runs (
    id          INTEGER PRIMARY KEY,
    started_at  TEXT    NOT NULL,
    finished_at TEXT,
    instruments INTEGER NOT NULL CHECK (instruments >= 0),
    proposals   INTEGER NOT NULL DEFAULT 0 CHECK (proposals >= 0),
    errors      INTEGER NOT NULL DEFAULT 0 CHECK (errors >= 0),
    error_text  TEXT
);
