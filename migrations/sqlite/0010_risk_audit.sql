-- The risk audit: every decision of the risk engine, approved or refused, with its inputs.
-- `code` is APPROVED or the refusal's stable code; `stage` the stage that decided (or passed);
-- `request` the order request and `inputs` the context figures used, both JSON text (money in
-- paise). An approved decision is written in the same transaction as its order row and names it
-- in `order_id`; a refused one has no order. Times are UTC RFC 3339 text.

CREATE TABLE IF NOT EXISTS risk_decisions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ts          TEXT    NOT NULL,
    tag         TEXT    NOT NULL,
    instrument  TEXT    NOT NULL,
    side        TEXT    NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity    INTEGER NOT NULL,
    purpose     TEXT    NOT NULL CHECK (purpose IN ('entry', 'exit')),
    proposal_id INTEGER,
    order_id    INTEGER REFERENCES orders (id),
    code        TEXT    NOT NULL,
    stage       TEXT    NOT NULL,
    reason      TEXT,
    request     TEXT    NOT NULL,
    inputs      TEXT    NOT NULL
);

CREATE INDEX IF NOT EXISTS risk_decisions_ts ON risk_decisions (ts);
CREATE INDEX IF NOT EXISTS risk_decisions_tag ON risk_decisions (tag);
