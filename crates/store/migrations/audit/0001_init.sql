-- The append-only audit log: each event is chained to the previous by an HMAC under the
-- audit key (which lives in the keyring, not here). Events never hold PHI values.
CREATE TABLE IF NOT EXISTS {schema}.audit_events (
    seq          {int} PRIMARY KEY,
    recorded_at  {int} NOT NULL,
    event        TEXT    NOT NULL,
    mac          {bytes}    NOT NULL
);
