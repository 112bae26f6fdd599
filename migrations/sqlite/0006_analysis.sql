-- The analysis agent's record: one trace per LLM analysis (model, prompt hash, tool calls,
-- tokens, cost, latency, verdict or error), linked to the proposal it produced; and the news
-- cache (NewsAPI free tiers allow ~100 requests a day).

CREATE TABLE IF NOT EXISTS analysis_traces (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at   TEXT    NOT NULL,
    instrument   TEXT    NOT NULL,
    analyst      TEXT    NOT NULL,
    model        TEXT    NOT NULL,
    prompt_hash  TEXT    NOT NULL,
    tool_calls   TEXT    NOT NULL,
    tokens_in    INTEGER NOT NULL DEFAULT 0,
    tokens_out   INTEGER NOT NULL DEFAULT 0,
    cost_paise   INTEGER NOT NULL DEFAULT 0,
    latency_ms   INTEGER NOT NULL DEFAULT 0,
    verdict      TEXT,
    error        TEXT,
    proposal_id  INTEGER REFERENCES proposals (id)
);

CREATE INDEX IF NOT EXISTS analysis_traces_proposal ON analysis_traces (proposal_id);
CREATE INDEX IF NOT EXISTS analysis_traces_created ON analysis_traces (created_at);

CREATE TABLE IF NOT EXISTS news_cache (
    cache_key   TEXT PRIMARY KEY,
    fetched_at  TEXT NOT NULL,
    body        TEXT NOT NULL
);
