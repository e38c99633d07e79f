-- A sealed record store (identity or clinical: the same shape, separate files or schemas).
-- No column holds plaintext PHI: content is AEAD ciphertext, ids are keyed pseudonymous row
-- ids, links are keyed pseudonyms, search keys are keyed blind-index digests.
-- Every version of a record is a row; the head is the highest version.
CREATE TABLE IF NOT EXISTS {schema}.record_versions (
    seq          {serial} PRIMARY KEY,
    org          TEXT    NOT NULL,
    rtype        TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      {int} NOT NULL,
    deleted      {bool}  NOT NULL,
    link         {bytes},
    kek_version  {int} NOT NULL,
    wrapped_dek  {bytes} NOT NULL,
    ciphertext   {bytes} NOT NULL,
    updated_at   {int} NOT NULL,
    UNIQUE (org, rtype, id, version)
);
CREATE INDEX IF NOT EXISTS record_versions_link ON {schema}.record_versions (org, link)
    WHERE link IS NOT NULL;
CREATE INDEX IF NOT EXISTS record_versions_kek ON {schema}.record_versions (kek_version);

-- Blind-index entries of live heads only (replaced on update, removed on delete/erase).
-- `rec` is the head version's `seq`: ever-increasing, so its index grows at one end.
CREATE TABLE IF NOT EXISTS {schema}.blind_index (
    org     TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    digest  {bytes} NOT NULL,
    rec     {int} NOT NULL,
    PRIMARY KEY (org, kind, digest, rec)
){without_rowid};
CREATE INDEX IF NOT EXISTS blind_index_rec ON {schema}.blind_index (rec);
