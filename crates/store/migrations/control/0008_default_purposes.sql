-- Purpose of use without a custom header: the purpose applied when a call states none.
-- A client's default (one of its purposes; '' = none).
ALTER TABLE {schema}.clients ADD COLUMN default_purpose TEXT NOT NULL DEFAULT '';
-- The purpose a person chose at sign-in, kept with the challenge and then the session ('' = none).
ALTER TABLE {schema}.sessions ADD COLUMN purpose TEXT NOT NULL DEFAULT '';
-- An organization's default purpose per role, for people who chose none at sign-in.
CREATE TABLE IF NOT EXISTS {schema}.role_default_purposes (
    org     TEXT NOT NULL,
    role    TEXT NOT NULL,
    purpose TEXT NOT NULL,
    PRIMARY KEY (org, role)
);
