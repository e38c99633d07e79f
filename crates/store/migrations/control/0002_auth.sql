-- Users, MFA, sessions and service clients. Passwords are Argon2id hashes, TOTP seeds are
-- sealed by the vault, tokens and backup codes are stored as keyed hashes only.
CREATE TABLE IF NOT EXISTS {schema}.users (
    id                   TEXT PRIMARY KEY,
    org                  TEXT    NOT NULL,
    username             TEXT    NOT NULL UNIQUE,
    role                 TEXT    NOT NULL,
    password_hash        TEXT    NOT NULL,
    password_changed_at  {int} NOT NULL,
    must_change_password {bool} NOT NULL,
    totp_sealed          {bytes},
    totp_last_step       {int},
    mfa_enrolled         {bool} NOT NULL,
    disabled             {bool} NOT NULL,
    failed_logins        {int} NOT NULL,
    locked_until         {int},
    last_login_at        {int},
    created_at           {int} NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.backup_codes (
    user_id    TEXT NOT NULL,
    code_hash  {bytes} NOT NULL,
    used_at    {int},
    PRIMARY KEY (user_id, code_hash)
);
CREATE TABLE IF NOT EXISTS {schema}.sessions (
    token_hash    {bytes} PRIMARY KEY,
    kind          TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    org           TEXT    NOT NULL,
    created_at    {int} NOT NULL,
    last_seen_at  {int} NOT NULL,
    expires_at    {int} NOT NULL,
    revoked       {bool} NOT NULL,
    scopes        TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_subject ON {schema}.sessions (subject);
CREATE TABLE IF NOT EXISTS {schema}.clients (
    id           TEXT PRIMARY KEY,
    org          TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    scopes       TEXT    NOT NULL,
    secret_hash  {bytes}    NOT NULL,
    disabled     {bool} NOT NULL,
    created_at   {int} NOT NULL
);
