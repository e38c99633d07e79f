-- The purposes of use a service client acts for (space-separated HL7 codes).
ALTER TABLE {schema}.clients ADD COLUMN purposes TEXT NOT NULL DEFAULT 'TREAT HOPERAT';
