-- Control data: no PHI. Keys are stored only wrapped by the root key.
CREATE TABLE IF NOT EXISTS {schema}.settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.organizations (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  {int} NOT NULL
);
CREATE TABLE IF NOT EXISTS {schema}.keyring (
    purpose     TEXT    NOT NULL,
    version     {int} NOT NULL,
    wrapped     {bytes}    NOT NULL,
    created_at  {int} NOT NULL,
    PRIMARY KEY (purpose, version)
);
