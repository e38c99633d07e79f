-- The purpose of use applied when a client's call states none (one of its purposes; '' = none).
-- (The same content as SQLite's 0008.)
ALTER TABLE {schema}.clients ADD COLUMN IF NOT EXISTS default_purpose TEXT NOT NULL DEFAULT '';
