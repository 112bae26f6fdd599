-- The web dashboard: login sessions (only a hash of the cookie is stored), the audit of every
-- operator action with its actor (telegram:<user>, web, cli, scheduler), the alerts sent to the
-- operator, and secrets the service generated for itself (the dashboard's STATUS_TOKEN when
-- none is configured). Times are UTC RFC 3339 text.

CREATE TABLE IF NOT EXISTS web_sessions (
    id_hash    TEXT PRIMARY KEY,
    csrf       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS web_sessions_expires_at ON web_sessions (expires_at);

CREATE TABLE IF NOT EXISTS action_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ts          TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    command     TEXT    NOT NULL,
    proposal_id INTEGER,
    result      TEXT    NOT NULL
);

CREATE INDEX IF NOT EXISTS action_log_proposal ON action_log (proposal_id);

CREATE TABLE IF NOT EXISTS alerts_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    ts        TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    text      TEXT    NOT NULL,
    delivered INTEGER NOT NULL,
    error     TEXT
);

CREATE TABLE IF NOT EXISTS generated_secrets (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at TEXT NOT NULL
);
