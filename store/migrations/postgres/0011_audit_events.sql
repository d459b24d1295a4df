-- 0011_audit_events: the audit trail (docs/spec/audit.md; PostgreSQL, mirroring
-- migrations/sqlite/0011). A change inserts its event in its own transaction; a refused call
-- or authentication inserts one on its own. Events outlive what they name: no foreign keys.
-- Times are epoch milliseconds; '' stands for a member that does not apply.
CREATE TABLE audit_events (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created          BIGINT NOT NULL,
    request_id       TEXT COLLATE "C" NOT NULL,
    -- The project whose admin reads the event; '' for identity events, logins and refused
    -- authentications, which the operator admin reads.
    project_id       TEXT COLLATE "C" NOT NULL,
    user_id          TEXT COLLATE "C" NOT NULL,
    user_name        TEXT COLLATE "C" NOT NULL,
    domain_id        TEXT COLLATE "C" NOT NULL,
    domain_name      TEXT COLLATE "C" NOT NULL,
    actor_project_id TEXT COLLATE "C" NOT NULL,
    auth_method      TEXT COLLATE "C" NOT NULL,
    credential       TEXT COLLATE "C" NOT NULL, -- the AK or a token's fingerprint, never a secret
    client_ip        TEXT COLLATE "C" NOT NULL,
    action           TEXT COLLATE "C" NOT NULL,
    target_type      TEXT COLLATE "C" NOT NULL,
    target_id        TEXT COLLATE "C" NOT NULL,
    status           INTEGER NOT NULL,
    code             TEXT COLLATE "C" NOT NULL,
    task_id          TEXT COLLATE "C" NOT NULL
);

-- A project's events newest first (GET /v3/{project_id}/audit-events; '' the operator's).
CREATE INDEX audit_events_by_project ON audit_events (project_id, created, id);
-- The retention sweep.
CREATE INDEX audit_events_by_time ON audit_events (created);
