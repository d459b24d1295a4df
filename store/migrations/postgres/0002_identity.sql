-- 0002_identity: the full identity model of auth.md §3 (PostgreSQL), mirroring
-- migrations/sqlite/0002_identity.sql: descriptions, the regional default project, roles from
-- install time, tokens that outlive their user, access keys and temporary credentials.

-- The three roles exist from install on (auth.md §3.1). gen_random_uuid() without its dashes is
-- 32 lowercase hex, like every other identity ID (SQLite: lower(hex(randomblob(16)))).
INSERT INTO roles (id, name) VALUES (replace(gen_random_uuid()::text, '-', ''), 'reader') ON CONFLICT DO NOTHING;
INSERT INTO roles (id, name) VALUES (replace(gen_random_uuid()::text, '-', ''), 'member') ON CONFLICT DO NOTHING;
INSERT INTO roles (id, name) VALUES (replace(gen_random_uuid()::text, '-', ''), 'admin') ON CONFLICT DO NOTHING;

ALTER TABLE users ADD COLUMN description TEXT COLLATE "C" NOT NULL DEFAULT '';

-- The project named after the region that each domain gets at creation (auth.md §3.2); every
-- project before this migration came from the bootstrap, so it is its domain's default.
ALTER TABLE projects ADD COLUMN is_default BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE projects SET is_default = TRUE;
CREATE UNIQUE INDEX projects_one_default_per_domain ON projects (domain_id) WHERE is_default;

-- Tokens lose their foreign key to users (a deleted user's tokens must answer "revoked", not
-- "unknown", auth.md §5.5); revoked_at replaces the revoked flag; audit_id is the first of
-- audit_ids. PostgreSQL alters in place where SQLite rebuilds the table.
ALTER TABLE tokens DROP CONSTRAINT tokens_user_id_fkey;
ALTER TABLE tokens ADD COLUMN audit_id TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE tokens ADD COLUMN revoked_at BIGINT NOT NULL DEFAULT 0;
UPDATE tokens SET audit_id = COALESCE(audit_ids::jsonb ->> 0, ''),
    -- The old flag kept no time: the migration's own stands in.
    revoked_at = CASE WHEN revoked THEN (extract(epoch FROM now()) * 1000)::bigint ELSE 0 END;
ALTER TABLE tokens DROP COLUMN revoked;
CREATE INDEX tokens_by_user ON tokens (user_id);
CREATE INDEX tokens_by_project ON tokens (project_id) WHERE project_id <> '';
CREATE INDEX tokens_by_domain ON tokens (domain_id) WHERE domain_id <> '';

-- Permanent access keys (auth.md §3.5). secret holds the SK sealed with the AK as associated
-- data; the store never sees it in clear.
CREATE TABLE access_keys (
    access      TEXT COLLATE "C" PRIMARY KEY,
    user_id     TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret      BYTEA NOT NULL,
    status      TEXT COLLATE "C" NOT NULL CHECK (status IN ('active', 'inactive')),
    description TEXT COLLATE "C" NOT NULL DEFAULT '',
    created     BIGINT NOT NULL,
    last_used   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX access_keys_by_user ON access_keys (user_id);

-- Backstop for the limit of two keys per user. CreateAccessKey locks the user row before it
-- counts, so concurrent creations for one user queue; the trigger makes the limit hold for any
-- other writer too.
CREATE FUNCTION access_keys_at_most_two_per_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT COUNT(*) FROM access_keys WHERE user_id = NEW.user_id) >= 2 THEN
        RAISE EXCEPTION 'a user has at most two access keys' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER access_keys_at_most_two_per_user
BEFORE INSERT ON access_keys
FOR EACH ROW EXECUTE FUNCTION access_keys_at_most_two_per_user();

-- Temporary credentials (auth.md §3.6). Only the SHA-256 of the security token is kept.
CREATE TABLE temporary_credentials (
    access              TEXT COLLATE "C" PRIMARY KEY,
    user_id             TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scope_project_id    TEXT COLLATE "C" REFERENCES projects (id) ON DELETE CASCADE, -- NULL when unbound
    secret              BYTEA NOT NULL,
    security_token_hash TEXT COLLATE "C" NOT NULL,
    expires_at          BIGINT NOT NULL,
    source_audit_id     TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX temporary_credentials_by_user ON temporary_credentials (user_id);
CREATE INDEX temporary_credentials_by_project ON temporary_credentials (scope_project_id)
    WHERE scope_project_id IS NOT NULL;
CREATE INDEX temporary_credentials_by_source ON temporary_credentials (source_audit_id)
    WHERE source_audit_id <> '';
CREATE INDEX temporary_credentials_by_expiry ON temporary_credentials (expires_at);
