-- A sealed record store (identity or clinical: the same shape, separate schemas). No column
-- holds plaintext PHI: content is AEAD ciphertext, ids are keyed pseudonymous row ids, links
-- are keyed pseudonyms, search keys are keyed blind-index digests.
CREATE TABLE IF NOT EXISTS {schema}.record_versions (
    seq          BIGSERIAL PRIMARY KEY,
    org          TEXT    NOT NULL,
    rtype        TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    version      BIGINT  NOT NULL,
    deleted      BOOLEAN NOT NULL,
    link         BYTEA,
    kek_version  BIGINT  NOT NULL,
    wrapped_dek  BYTEA   NOT NULL,
    ciphertext   BYTEA   NOT NULL,
    updated_at   BIGINT  NOT NULL,
    UNIQUE (org, rtype, id, version)
);
CREATE INDEX IF NOT EXISTS record_versions_link ON {schema}.record_versions (org, link)
    WHERE link IS NOT NULL;
CREATE INDEX IF NOT EXISTS record_versions_kek ON {schema}.record_versions (kek_version);
CREATE TABLE IF NOT EXISTS {schema}.blind_index (
    org     TEXT   NOT NULL,
    kind    TEXT   NOT NULL,
    digest  BYTEA  NOT NULL,
    rec     BIGINT NOT NULL,
    PRIMARY KEY (org, kind, digest, rec)
);
CREATE INDEX IF NOT EXISTS blind_index_rec ON {schema}.blind_index (rec);
