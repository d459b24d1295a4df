-- 0002_identity: the full identity model of auth.md §3 (SQLite): descriptions, the regional
-- default project, roles from install time, tokens that outlive their user, access keys and
-- temporary credentials.

-- The three roles exist from install on (auth.md §3.1: "generated once at install"), so role IDs
-- and assignments do not wait for the bootstrap. lower(hex(randomblob(16))) is 32 lowercase hex
-- from 128 random bits, like every other identity ID (PostgreSQL: gen_random_uuid() without
-- dashes, or IDs inserted by the engine).
INSERT OR IGNORE INTO roles (id, name) VALUES (lower(hex(randomblob(16))), 'reader');
INSERT OR IGNORE INTO roles (id, name) VALUES (lower(hex(randomblob(16))), 'member');
INSERT OR IGNORE INTO roles (id, name) VALUES (lower(hex(randomblob(16))), 'admin');

ALTER TABLE users ADD COLUMN description TEXT NOT NULL DEFAULT '';

-- The project named after the region that each domain gets at creation (auth.md §3.2). Before
-- this migration the bootstrap was the only way to create a project, so every existing project
-- is its domain's default project.
ALTER TABLE projects ADD COLUMN is_default INTEGER NOT NULL DEFAULT 0;
UPDATE projects SET is_default = 1;
CREATE UNIQUE INDEX projects_one_default_per_domain ON projects (domain_id) WHERE is_default = 1;

-- Tokens are rebuilt without the foreign key to users: a deleted user's tokens must answer
-- "revoked", not "unknown" (auth.md §5.5), so they stay until the expiry housekeeping.
-- revoked_at replaces the revoked flag (auth.md §3.1); audit_id is the first of audit_ids, the
-- token's own, which temporary credentials name as their source.
CREATE TABLE tokens_v2 (
    hash       TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL,
    project_id TEXT NOT NULL DEFAULT '',
    domain_id  TEXT NOT NULL DEFAULT '',
    methods    TEXT NOT NULL DEFAULT '[]', -- JSON array of strings
    audit_ids  TEXT NOT NULL DEFAULT '[]', -- JSON array of strings
    audit_id   TEXT NOT NULL DEFAULT '',
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER NOT NULL DEFAULT 0
);
INSERT INTO tokens_v2 (hash, user_id, project_id, domain_id, methods, audit_ids, audit_id, issued_at,
    expires_at, revoked_at)
SELECT hash, user_id, project_id, domain_id, methods, audit_ids,
    COALESCE(json_extract(audit_ids, '$[0]'), ''), issued_at, expires_at,
    -- The old flag kept no time: the migration's own stands in.
    CASE WHEN revoked THEN CAST(strftime('%s', 'now') AS INTEGER) * 1000 ELSE 0 END
FROM tokens;
DROP TABLE tokens;
ALTER TABLE tokens_v2 RENAME TO tokens;
CREATE INDEX tokens_by_expiry ON tokens (expires_at);
CREATE INDEX tokens_by_user ON tokens (user_id);
CREATE INDEX tokens_by_project ON tokens (project_id) WHERE project_id <> '';
CREATE INDEX tokens_by_domain ON tokens (domain_id) WHERE domain_id <> '';

-- Permanent access keys (auth.md §3.5). secret holds the SK sealed with the AK as associated
-- data; the store never sees it in clear.
CREATE TABLE access_keys (
    access      TEXT PRIMARY KEY COLLATE BINARY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret      BLOB NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'inactive')),
    description TEXT NOT NULL DEFAULT '',
    created     INTEGER NOT NULL,
    last_used   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX access_keys_by_user ON access_keys (user_id);

-- Backstop for the limit of two keys per user: CreateAccessKey counts in its write
-- transaction (exact, as SQLite has one writer), this trigger makes it hold for any writer.
-- PostgreSQL: the same check in a trigger function, plus a lock on the user row.
CREATE TRIGGER access_keys_at_most_two_per_user
BEFORE INSERT ON access_keys
WHEN (SELECT COUNT(*) FROM access_keys WHERE user_id = NEW.user_id) >= 2
BEGIN
    SELECT RAISE(ABORT, 'a user has at most two access keys');
END;

-- Temporary credentials (auth.md §3.6). Only the SHA-256 of the security token is kept.
CREATE TABLE temporary_credentials (
    access              TEXT PRIMARY KEY COLLATE BINARY,
    user_id             TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scope_project_id    TEXT REFERENCES projects (id) ON DELETE CASCADE, -- NULL when unbound
    secret              BLOB NOT NULL,
    security_token_hash TEXT NOT NULL,
    expires_at          INTEGER NOT NULL,
    source_audit_id     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX temporary_credentials_by_user ON temporary_credentials (user_id);
CREATE INDEX temporary_credentials_by_project ON temporary_credentials (scope_project_id)
    WHERE scope_project_id IS NOT NULL;
CREATE INDEX temporary_credentials_by_source ON temporary_credentials (source_audit_id)
    WHERE source_audit_id <> '';
CREATE INDEX temporary_credentials_by_expiry ON temporary_credentials (expires_at);
