-- Purpose of use without a custom header (the same content as SQLite's 0008).
ALTER TABLE {schema}.clients ADD COLUMN IF NOT EXISTS default_purpose TEXT NOT NULL DEFAULT '';
ALTER TABLE {schema}.sessions ADD COLUMN IF NOT EXISTS purpose TEXT NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS {schema}.role_default_purposes (
    org     TEXT NOT NULL,
    role    TEXT NOT NULL,
    purpose TEXT NOT NULL,
    PRIMARY KEY (org, role)
);
