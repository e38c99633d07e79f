-- Usernames are unique within an organization, not across organizations: an organization's
-- administrator creating a user learns nothing of other organizations' users. A name held in
-- several organizations signs in with its organization named. (SQLite cannot drop a UNIQUE
-- constraint in place: the table is rebuilt with the same columns and rows.)
CREATE TABLE users_per_org (
    id                   TEXT PRIMARY KEY,
    org                  TEXT    NOT NULL,
    username             TEXT    NOT NULL,
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
    created_at           INTEGER NOT NULL,
    UNIQUE (org, username)
);
INSERT INTO users_per_org (id, org, username, role, password_hash, password_changed_at,
    must_change_password, totp_sealed, totp_last_step, mfa_enrolled, disabled, failed_logins,
    locked_until, last_login_at, created_at)
SELECT id, org, username, role, password_hash, password_changed_at, must_change_password,
    totp_sealed, totp_last_step, mfa_enrolled, disabled, failed_logins, locked_until,
    last_login_at, created_at
FROM users;
DROP TABLE users;
ALTER TABLE users_per_org RENAME TO users;
CREATE INDEX users_username ON users (username);
