-- The running `mft run` of this database (one at most: it holds the service lock). A second
-- instance reads it to say who holds the database; `mft kill` reads it to reach the running
-- service's local kill endpoint.
CREATE TABLE IF NOT EXISTS service_instance (
    id          INTEGER     PRIMARY KEY CHECK (id = 1),
    pid         BIGINT      NOT NULL,
    host        TEXT        NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    status_addr TEXT,
    token_path  TEXT
);
