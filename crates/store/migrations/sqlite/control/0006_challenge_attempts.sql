-- Second-factor attempts per login challenge: a challenge dies after 5 wrong codes.
ALTER TABLE sessions ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
