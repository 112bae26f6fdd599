-- Backtest runs (a run counts only once its status is 'complete'), the run id on trade-log rows
-- (NULL = paper or live trading, so backtest rows never mix with them), and recorded analyst
-- (LLM) exchanges keyed by a hash of the request, for --llm record / replay.

CREATE TABLE IF NOT EXISTS backtest_runs (
    id          TEXT PRIMARY KEY,
    status      TEXT NOT NULL CHECK (status IN ('running', 'complete', 'failed')),
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    params      TEXT NOT NULL,
    summary     TEXT,
    error       TEXT
);

ALTER TABLE trade_log ADD COLUMN run_id TEXT;
CREATE INDEX IF NOT EXISTS trade_log_run_id ON trade_log (run_id);

CREATE TABLE IF NOT EXISTS llm_exchanges (
    request_hash TEXT PRIMARY KEY,
    analyst      TEXT NOT NULL,
    instrument   TEXT NOT NULL,
    bar_ts       TEXT NOT NULL,
    request      TEXT NOT NULL,
    response     TEXT NOT NULL,
    run_id       TEXT,
    created_at   TEXT NOT NULL
);
