-- 0001_init: the initial OpenKPS schema (SQLite).
--
-- Conventions (the PostgreSQL migrations mirror them):
-- * times are INTEGER epoch milliseconds (kps-v3-api.md §1.6), 0 meaning "not set";
-- * booleans are INTEGER 0/1 (BOOLEAN in PostgreSQL);
-- * names and IDs compare byte-wise: COLLATE BINARY is SQLite's default and is spelled out
--   where the order or the uniqueness is part of the API contract (PostgreSQL: COLLATE "C");
-- * resources (servers, key pairs, tasks) carry a project_id without a foreign key to projects:
--   the identity of a project may live in an external identity service (auth.md §10).

-- Identity (auth.md §3) -----------------------------------------------------------------------

CREATE TABLE roles (
    id   TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE domains (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE COLLATE BINARY,
    enabled     INTEGER NOT NULL DEFAULT 1,
    description TEXT NOT NULL DEFAULT '',
    created     INTEGER NOT NULL
);

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL COLLATE BINARY,
    domain_id   TEXT NOT NULL REFERENCES domains (id),
    enabled     INTEGER NOT NULL DEFAULT 1,
    description TEXT NOT NULL DEFAULT '',
    created     INTEGER NOT NULL,
    UNIQUE (domain_id, name)
);

CREATE TABLE users (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL COLLATE BINARY,
    domain_id          TEXT NOT NULL REFERENCES domains (id),
    enabled            INTEGER NOT NULL DEFAULT 1,
    password_hash      TEXT NOT NULL DEFAULT '',
    password_changed   INTEGER NOT NULL DEFAULT 0,
    default_project_id TEXT REFERENCES projects (id),
    created            INTEGER NOT NULL,
    UNIQUE (domain_id, name)
);

-- A role is assigned to a user on exactly one of a project or a domain (auth.md §3.4).
CREATE TABLE role_assignments (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id    TEXT NOT NULL REFERENCES roles (id),
    project_id TEXT REFERENCES projects (id) ON DELETE CASCADE,
    domain_id  TEXT REFERENCES domains (id) ON DELETE CASCADE,
    CHECK ((project_id IS NULL) <> (domain_id IS NULL))
);
CREATE UNIQUE INDEX role_assignments_on_project
    ON role_assignments (user_id, project_id, role_id) WHERE project_id IS NOT NULL;
CREATE UNIQUE INDEX role_assignments_on_domain
    ON role_assignments (user_id, domain_id, role_id) WHERE domain_id IS NOT NULL;

-- Tokens are kept by the SHA-256 of the token string only (auth.md §3.1).
CREATE TABLE tokens (
    hash       TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id TEXT NOT NULL DEFAULT '',
    domain_id  TEXT NOT NULL DEFAULT '',
    methods    TEXT NOT NULL DEFAULT '[]', -- JSON array of strings
    audit_ids  TEXT NOT NULL DEFAULT '[]', -- JSON array of strings
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tokens_by_expiry ON tokens (expires_at);

-- Inventory (inventory.md) --------------------------------------------------------------------

CREATE TABLE servers (
    project_id  TEXT NOT NULL,
    id          TEXT NOT NULL COLLATE BINARY,
    name        TEXT NOT NULL,
    address     TEXT NOT NULL,
    port        INTEGER NOT NULL,
    login_user  TEXT NOT NULL, -- not "user": a reserved word in PostgreSQL
    host_keys   TEXT NOT NULL DEFAULT '[]', -- JSON array of pinned host keys; '[]' = none (TOFU)
    sshd_config TEXT NOT NULL,
    credential  BLOB, -- sealed service credential; NULL when none
    created     INTEGER NOT NULL,
    updated     INTEGER NOT NULL,
    PRIMARY KEY (project_id, id)
);

-- Key pairs (kps-v3-api.md §1.2, §2) ---------------------------------------------------------

-- AUTOINCREMENT: the key pair ID is service-wide unique and never reused (§2.3), which a plain
-- rowid does not promise once the highest row is deleted.
CREATE TABLE keypairs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id  TEXT NOT NULL,
    name        TEXT NOT NULL COLLATE BINARY,
    type        TEXT NOT NULL CHECK (type IN ('ssh', 'x509')),
    scope       TEXT NOT NULL CHECK (scope IN ('user', 'domain')),
    user_id     TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    algorithm   TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    private_key BLOB, -- sealed; NULL when not hosted
    created     INTEGER NOT NULL,
    updated     INTEGER NOT NULL,
    -- Names are unique per project across both scopes (§1.2); this index also serves the
    -- name-ordered marker pagination of §4.2.
    UNIQUE (project_id, name)
);

-- Bindings (§1.1): at most one per server per project, changed only by a successful task.
CREATE TABLE bindings (
    project_id        TEXT NOT NULL,
    server_id         TEXT NOT NULL,
    keypair_name      TEXT NOT NULL,
    public_key        TEXT NOT NULL,
    password_disabled INTEGER NOT NULL DEFAULT 0,
    updated           INTEGER NOT NULL,
    PRIMARY KEY (project_id, server_id),
    FOREIGN KEY (project_id, server_id) REFERENCES servers (project_id, id) ON DELETE CASCADE,
    -- Backstop for §2.5: a bound key pair cannot be deleted.
    FOREIGN KEY (project_id, keypair_name) REFERENCES keypairs (project_id, name)
);
CREATE INDEX bindings_by_keypair ON bindings (project_id, keypair_name);

-- Tasks (§3) ----------------------------------------------------------------------------------

-- No foreign key to servers: failed tasks outlive the server they ran on, so the server name is
-- copied in at submission.
CREATE TABLE tasks (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT, -- insertion order: claim tie-break
    id               TEXT NOT NULL UNIQUE COLLATE BINARY,
    project_id       TEXT NOT NULL,
    operation        TEXT NOT NULL CHECK (operation IN ('RESET', 'REPLACE', 'UNBIND')),
    phase            TEXT NOT NULL CHECK (phase IN ('READY', 'RUNNING', 'SUCCESS', 'FAILED')),
    server_id        TEXT NOT NULL,
    server_name      TEXT NOT NULL,
    keypair_name     TEXT NOT NULL,
    public_key       TEXT NOT NULL, -- installed (RESET/REPLACE) or removed (UNBIND), fixed at submission
    port             INTEGER NOT NULL DEFAULT 0, -- 0: the inventory port
    disable_password INTEGER NOT NULL DEFAULT 0,
    caller_auth      INTEGER NOT NULL DEFAULT 0,
    created          INTEGER NOT NULL,
    updated          INTEGER NOT NULL,
    error_code       TEXT NOT NULL DEFAULT '',
    error_msg        TEXT NOT NULL DEFAULT '',
    lease_owner      TEXT NOT NULL DEFAULT '',
    lease_expires    INTEGER NOT NULL DEFAULT 0,
    attempt          INTEGER NOT NULL DEFAULT 0
);

-- §3.1: at most one READY/RUNNING task per server per project. The store also checks this in
-- the submitting transaction (for the order of the error codes); the index is what makes it
-- true under any concurrency.
CREATE UNIQUE INDEX tasks_one_active_per_server
    ON tasks (project_id, server_id) WHERE phase IN ('READY', 'RUNNING');
-- Running/failed task lists of a project in §4.1 order, cheap with millions of rows.
CREATE INDEX tasks_by_project_phase ON tasks (project_id, phase, created DESC, id);
-- The claim queue (creation order) and the queue-capacity count.
CREATE INDEX tasks_ready_queue ON tasks (created, seq) WHERE phase = 'READY';
-- The lease sweeper.
CREATE INDEX tasks_running_leases ON tasks (lease_expires) WHERE phase = 'RUNNING';
-- The retention purge of succeeded tasks.
CREATE INDEX tasks_succeeded ON tasks (created) WHERE phase = 'SUCCESS';
