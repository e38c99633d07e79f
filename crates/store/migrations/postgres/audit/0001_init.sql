-- The append-only audit log (PostgreSQL). `{schema}` is the store's schema.
CREATE TABLE IF NOT EXISTS {schema}.audit_events (
    seq BIGINT PRIMARY KEY,
    recorded_at BIGINT NOT NULL,
    event TEXT NOT NULL,
    mac BYTEA NOT NULL
);
