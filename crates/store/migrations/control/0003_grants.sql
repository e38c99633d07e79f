-- Need-to-know grants and break-glass accesses. Patients appear only as keyed pseudonyms;
-- a break-glass reason is sealed by the vault.
CREATE TABLE IF NOT EXISTS {schema}.grants (
    id             TEXT PRIMARY KEY,
    org            TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    patient        TEXT    NOT NULL,
    purpose        TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    reason_sealed  {bytes},
    granted_by     TEXT    NOT NULL,
    created_at     {int} NOT NULL,
    expires_at     {int} NOT NULL,
    revoked        {bool} NOT NULL
);
CREATE INDEX IF NOT EXISTS grants_lookup ON {schema}.grants (org, user_id, patient, created_at);
