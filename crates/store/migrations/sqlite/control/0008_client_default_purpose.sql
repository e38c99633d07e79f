-- The purpose of use applied when a client's call states none (one of its purposes; '' = none).
ALTER TABLE clients ADD COLUMN default_purpose TEXT NOT NULL DEFAULT '';
