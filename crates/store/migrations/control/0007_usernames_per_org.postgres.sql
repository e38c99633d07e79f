-- Usernames are unique within an organization, not across organizations: an organization's
-- administrator creating a user learns nothing of other organizations' users. A name held in
-- several organizations signs in with its organization named. (The same content as SQLite's;
-- `users_username_key` is the name PostgreSQL gave 0002's UNIQUE constraint.)
ALTER TABLE {schema}.users DROP CONSTRAINT IF EXISTS users_username_key;
CREATE UNIQUE INDEX IF NOT EXISTS users_org_username ON {schema}.users (org, username);
CREATE INDEX IF NOT EXISTS users_username ON {schema}.users (username);
