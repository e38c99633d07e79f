-- Control data (PostgreSQL): no PHI. Keys are stored only wrapped by the root key, which
-- stays with the nodes (keyfile or HSM), never in the database. Passwords are Argon2id
-- hashes, TOTP seeds sealed by the vault, tokens and backup codes keyed hashes only; patients
-- appear only as keyed pseudonyms. (The same content as SQLite's 0001–0004.)
CREATE TABLE IF NOT EXISTS {schema}.settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.keyring (
    purpose     TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    wrapped     BYTEA  NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (purpose, version)
);
CREATE TABLE IF NOT EXISTS {schema}.users (
    id                   TEXT PRIMARY KEY,
    org                  TEXT    NOT NULL,
    username             TEXT    NOT NULL UNIQUE,
    role                 TEXT    NOT NULL,
    password_hash        TEXT    NOT NULL,
    password_changed_at  BIGINT  NOT NULL,
    must_change_password BOOLEAN NOT NULL,
    totp_sealed          BYTEA,
    totp_last_step       BIGINT,
    mfa_enrolled         BOOLEAN NOT NULL,
    disabled             BOOLEAN NOT NULL,
    failed_logins        BIGINT  NOT NULL,
    locked_until         BIGINT,
    last_login_at        BIGINT,
    created_at           BIGINT  NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.backup_codes (
    user_id    TEXT   NOT NULL,
    code_hash  BYTEA  NOT NULL,
    used_at    BIGINT,
    PRIMARY KEY (user_id, code_hash)
);
CREATE TABLE IF NOT EXISTS {schema}.sessions (
    token_hash    BYTEA PRIMARY KEY,
    kind          TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    org           TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    last_seen_at  BIGINT  NOT NULL,
    expires_at    BIGINT  NOT NULL,
    revoked       BOOLEAN NOT NULL,
    scopes        TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_subject ON {schema}.sessions (subject);
CREATE TABLE IF NOT EXISTS {schema}.clients (
    id           TEXT PRIMARY KEY,
    org          TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    scopes       TEXT    NOT NULL,
    purposes     TEXT    NOT NULL DEFAULT 'TREAT HOPERAT',
    secret_hash  BYTEA   NOT NULL,
    disabled     BOOLEAN NOT NULL,
    created_at   BIGINT  NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.grants (
    id             TEXT PRIMARY KEY,
    org            TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    patient        TEXT    NOT NULL,
    purpose        TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    reason_sealed  BYTEA,
    granted_by     TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    revoked        BOOLEAN NOT NULL
);
CREATE INDEX IF NOT EXISTS grants_lookup ON {schema}.grants (org, user_id, patient, created_at);
