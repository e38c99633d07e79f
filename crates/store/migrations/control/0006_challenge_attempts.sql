-- Second-factor attempts per login challenge: a challenge dies after 5 wrong codes.
ALTER TABLE {schema}.sessions ADD COLUMN attempts {int} NOT NULL DEFAULT 0;
