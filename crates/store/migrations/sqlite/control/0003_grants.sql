-- Need-to-know grants and break-glass accesses. Patients appear only as keyed pseudonyms;
-- a break-glass reason is sealed by the vault.
CREATE TABLE grants (
    id             TEXT PRIMARY KEY,
    org            TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    patient        TEXT    NOT NULL,
    purpose        TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    reason_sealed  BLOB,
    granted_by     TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    revoked        INTEGER NOT NULL
);
CREATE INDEX grants_lookup ON grants (org, user_id, patient, created_at);
