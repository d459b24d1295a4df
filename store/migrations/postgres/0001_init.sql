-- 0001_init: the initial OpenKPS schema (PostgreSQL), mirroring migrations/sqlite/0001_init.sql.
--
-- Differences from SQLite, and why:
-- * times are BIGINT epoch milliseconds (INTEGER is 32-bit here), 0 meaning "not set";
-- * booleans are BOOLEAN (SQLite stores INTEGER 0/1; the Go code binds and scans bool for both);
-- * every TEXT column is COLLATE "C": SQLite compares all text byte-wise (BINARY), and names,
--   IDs and markers are ordered and compared byte-wise by the API contract, whatever the
--   database's default collation is;
-- * BLOB is BYTEA; AUTOINCREMENT is an identity column (a sequence never reuses a value).

-- Identity (auth.md §3) -----------------------------------------------------------------------

CREATE TABLE roles (
    id   TEXT COLLATE "C" PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL UNIQUE
);

CREATE TABLE domains (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    description TEXT COLLATE "C" NOT NULL DEFAULT '',
    created     BIGINT NOT NULL
);

CREATE TABLE projects (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL,
    domain_id   TEXT COLLATE "C" NOT NULL REFERENCES domains (id),
    enabled     BOOLEAN NOT NULL DEFAULT TRUE,
    description TEXT COLLATE "C" NOT NULL DEFAULT '',
    created     BIGINT NOT NULL,
    UNIQUE (domain_id, name)
);

CREATE TABLE users (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    name               TEXT COLLATE "C" NOT NULL,
    domain_id          TEXT COLLATE "C" NOT NULL REFERENCES domains (id),
    enabled            BOOLEAN NOT NULL DEFAULT TRUE,
    password_hash      TEXT COLLATE "C" NOT NULL DEFAULT '',
    password_changed   BIGINT NOT NULL DEFAULT 0,
    default_project_id TEXT COLLATE "C" REFERENCES projects (id),
    created            BIGINT NOT NULL,
    UNIQUE (domain_id, name)
);

-- A role is assigned to a user on exactly one of a project or a domain (auth.md §3.4).
CREATE TABLE role_assignments (
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id    TEXT COLLATE "C" NOT NULL REFERENCES roles (id),
    project_id TEXT COLLATE "C" REFERENCES projects (id) ON DELETE CASCADE,
    domain_id  TEXT COLLATE "C" REFERENCES domains (id) ON DELETE CASCADE,
    CHECK ((project_id IS NULL) <> (domain_id IS NULL))
);
CREATE UNIQUE INDEX role_assignments_on_project
    ON role_assignments (user_id, project_id, role_id) WHERE project_id IS NOT NULL;
CREATE UNIQUE INDEX role_assignments_on_domain
    ON role_assignments (user_id, domain_id, role_id) WHERE domain_id IS NOT NULL;

-- Tokens are kept by the SHA-256 of the token string only (auth.md §3.1).
CREATE TABLE tokens (
    hash       TEXT COLLATE "C" PRIMARY KEY,
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id TEXT COLLATE "C" NOT NULL DEFAULT '',
    domain_id  TEXT COLLATE "C" NOT NULL DEFAULT '',
    methods    TEXT COLLATE "C" NOT NULL DEFAULT '[]', -- JSON array of strings
    audit_ids  TEXT COLLATE "C" NOT NULL DEFAULT '[]', -- JSON array of strings
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked    BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX tokens_by_expiry ON tokens (expires_at);

-- Inventory (inventory.md) --------------------------------------------------------------------

CREATE TABLE servers (
    project_id  TEXT COLLATE "C" NOT NULL,
    id          TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    address     TEXT COLLATE "C" NOT NULL,
    port        INTEGER NOT NULL,
    login_user  TEXT COLLATE "C" NOT NULL, -- not "user": a reserved word
    host_keys   TEXT COLLATE "C" NOT NULL DEFAULT '[]', -- JSON array of pinned host keys; '[]' = none (TOFU)
    sshd_config TEXT COLLATE "C" NOT NULL,
    credential  BYTEA, -- sealed service credential; NULL when none
    created     BIGINT NOT NULL,
    updated     BIGINT NOT NULL,
    PRIMARY KEY (project_id, id)
);

-- Key pairs (kps-v3-api.md §1.2, §2) ---------------------------------------------------------

-- The key pair ID is service-wide unique and never reused (§2.3): a sequence never hands out a
-- value twice.
CREATE TABLE keypairs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id  TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    type        TEXT COLLATE "C" NOT NULL CHECK (type IN ('ssh', 'x509')),
    scope       TEXT COLLATE "C" NOT NULL CHECK (scope IN ('user', 'domain')),
    user_id     TEXT COLLATE "C" NOT NULL,
    public_key  TEXT COLLATE "C" NOT NULL,
    fingerprint TEXT COLLATE "C" NOT NULL,
    algorithm   TEXT COLLATE "C" NOT NULL,
    description TEXT COLLATE "C" NOT NULL DEFAULT '',
    private_key BYTEA, -- sealed; NULL when not hosted
    created     BIGINT NOT NULL,
    updated     BIGINT NOT NULL,
    -- Names are unique per project across both scopes (§1.2); this index also serves the
    -- name-ordered marker pagination of §4.2.
    UNIQUE (project_id, name)
);

-- Bindings (§1.1): at most one per server per project, changed only by a successful task.
CREATE TABLE bindings (
    project_id        TEXT COLLATE "C" NOT NULL,
    server_id         TEXT COLLATE "C" NOT NULL,
    keypair_name      TEXT COLLATE "C" NOT NULL,
    public_key        TEXT COLLATE "C" NOT NULL,
    password_disabled BOOLEAN NOT NULL DEFAULT FALSE,
    updated           BIGINT NOT NULL,
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
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- insertion order: claim tie-break
    id               TEXT COLLATE "C" NOT NULL UNIQUE,
    project_id       TEXT COLLATE "C" NOT NULL,
    operation        TEXT COLLATE "C" NOT NULL CHECK (operation IN ('RESET', 'REPLACE', 'UNBIND')),
    phase            TEXT COLLATE "C" NOT NULL CHECK (phase IN ('READY', 'RUNNING', 'SUCCESS', 'FAILED')),
    server_id        TEXT COLLATE "C" NOT NULL,
    server_name      TEXT COLLATE "C" NOT NULL,
    keypair_name     TEXT COLLATE "C" NOT NULL,
    public_key       TEXT COLLATE "C" NOT NULL, -- installed (RESET/REPLACE) or removed (UNBIND), fixed at submission
    port             INTEGER NOT NULL DEFAULT 0, -- 0: the inventory port
    disable_password BOOLEAN NOT NULL DEFAULT FALSE,
    caller_auth      BOOLEAN NOT NULL DEFAULT FALSE,
    created          BIGINT NOT NULL,
    updated          BIGINT NOT NULL,
    error_code       TEXT COLLATE "C" NOT NULL DEFAULT '',
    error_msg        TEXT COLLATE "C" NOT NULL DEFAULT '',
    lease_owner      TEXT COLLATE "C" NOT NULL DEFAULT '',
    lease_expires    BIGINT NOT NULL DEFAULT 0,
    attempt          INTEGER NOT NULL DEFAULT 0
);

-- §3.1: at most one READY/RUNNING task per server per project, across every replica: the
-- submitting transaction's check can race under READ COMMITTED, this index cannot.
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
