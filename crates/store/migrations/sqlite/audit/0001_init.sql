-- The append-only audit log: each event is chained to the previous by an HMAC under the
-- audit key (which lives in the keyring, not here). Events never hold PHI values.
CREATE TABLE audit_events (
    seq          INTEGER PRIMARY KEY,
    recorded_at  INTEGER NOT NULL,
    event        TEXT    NOT NULL,
    mac          BLOB    NOT NULL
);
