-- Market connection: NSE trading holidays, the Kite session (access token encrypted at rest)
-- and the single-use login states the Kite redirect carries back. Times are UTC RFC 3339 text.

CREATE TABLE IF NOT EXISTS holidays (
    day         TEXT NOT NULL PRIMARY KEY,
    description TEXT NOT NULL
);

-- One row per login; the newest row is the current session. `token` is base64 of
-- nonce || ciphertext (XChaCha20-Poly1305); the raw access token is never stored.
CREATE TABLE IF NOT EXISTS kite_sessions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT NOT NULL,
    user_name  TEXT NOT NULL,
    token      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    expired_at TEXT,
    expired_reason TEXT
);

-- `state_hash` is the SHA-256 (hex) of the nonce sent in the login URL.
CREATE TABLE IF NOT EXISTS login_states (
    state_hash TEXT NOT NULL PRIMARY KEY,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);
