-- Tombstones of crypto-shredded records: organization, store and keyed pseudonymous row id
-- only (no PHI). Restoring an older backup applies them, so an erased record stays erased.
CREATE TABLE IF NOT EXISTS {schema}.tombstones (
    org        TEXT    NOT NULL,
    store      TEXT    NOT NULL,
    rtype      TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    erased_at  {int} NOT NULL,
    PRIMARY KEY (org, store, rtype, id)
);
