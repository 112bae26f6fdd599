-- Market connection: NSE trading holidays, the Kite session (access token encrypted at rest)
-- and the single-use login states the Kite redirect carries back.

CREATE TABLE IF NOT EXISTS holidays (
    day         DATE NOT NULL PRIMARY KEY,
    description TEXT NOT NULL
);

-- One row per login; the newest row is the current session. `token` is base64 of
-- nonce || ciphertext (XChaCha20-Poly1305); the raw access token is never stored.
CREATE TABLE IF NOT EXISTS kite_sessions (
    id         BIGSERIAL   PRIMARY KEY,
    user_id    TEXT        NOT NULL,
    user_name  TEXT        NOT NULL,
    token      TEXT        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    expired_at TIMESTAMPTZ,
    expired_reason TEXT
);

-- `state_hash` is the SHA-256 (hex) of the nonce sent in the login URL.
CREATE TABLE IF NOT EXISTS login_states (
    state_hash TEXT        NOT NULL PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
