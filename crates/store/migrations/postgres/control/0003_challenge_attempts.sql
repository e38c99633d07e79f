-- Second-factor attempts per login challenge: a challenge dies after 5 wrong codes.
-- (The same content as SQLite's 0006.)
ALTER TABLE {schema}.sessions ADD COLUMN IF NOT EXISTS attempts BIGINT NOT NULL DEFAULT 0;
