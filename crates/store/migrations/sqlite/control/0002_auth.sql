-- Users, MFA, sessions and service clients. Passwords are Argon2id hashes, TOTP seeds are
-- sealed by the vault, tokens and backup codes are stored as keyed hashes only.
CREATE TABLE users (
    id                   TEXT PRIMARY KEY,
    org                  TEXT    NOT NULL,
    username             TEXT    NOT NULL UNIQUE,
    role                 TEXT    NOT NULL,
    password_hash        TEXT    NOT NULL,
    password_changed_at  INTEGER NOT NULL,
    must_change_password INTEGER NOT NULL,
    totp_sealed          BLOB,
    totp_last_step       INTEGER,
    mfa_enrolled         INTEGER NOT NULL,
    disabled             INTEGER NOT NULL,
    failed_logins        INTEGER NOT NULL,
    locked_until         INTEGER,
    last_login_at        INTEGER,
    created_at           INTEGER NOT NULL
);
CREATE TABLE backup_codes (
    user_id    TEXT NOT NULL,
    code_hash  BLOB NOT NULL,
    used_at    INTEGER,
    PRIMARY KEY (user_id, code_hash)
);
CREATE TABLE sessions (
    token_hash    BLOB PRIMARY KEY,
    kind          TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    org           TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked       INTEGER NOT NULL,
    scopes        TEXT    NOT NULL
);
CREATE INDEX sessions_subject ON sessions (subject);
CREATE TABLE clients (
    id           TEXT PRIMARY KEY,
    org          TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    scopes       TEXT    NOT NULL,
    secret_hash  BLOB    NOT NULL,
    disabled     INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);
