-- A sealed record store (identity or clinical: the same shape, separate files).
-- No column holds plaintext PHI: content is AEAD ciphertext, ids are keyed pseudonymous row
-- ids, links are keyed pseudonyms, search keys are keyed blind-index digests.
-- Every version of a record is a row; the head is the highest version.
CREATE TABLE record_versions (
    seq          INTEGER PRIMARY KEY,
    org          TEXT    NOT NULL,
    rtype        TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    deleted      INTEGER NOT NULL,
    link         BLOB,
    kek_version  INTEGER NOT NULL,
    wrapped_dek  BLOB    NOT NULL,
    ciphertext   BLOB    NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (org, rtype, id, version)
);
CREATE INDEX record_versions_link ON record_versions (org, link) WHERE link IS NOT NULL;
CREATE INDEX record_versions_kek ON record_versions (kek_version);

-- Blind-index entries of live heads only (replaced on update, removed on delete/erase).
-- `rec` is the head version's `seq`: ever-increasing, so its index grows at one end.
CREATE TABLE blind_index (
    org     TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    digest  BLOB    NOT NULL,
    rec     INTEGER NOT NULL,
    PRIMARY KEY (org, kind, digest, rec)
) WITHOUT ROWID;
CREATE INDEX blind_index_rec ON blind_index (rec);
