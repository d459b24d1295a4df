-- 0011_audit_events: the audit trail (docs/spec/audit.md; SQLite, mirrored by
-- migrations/postgres/0011). A change inserts its event in its own transaction; a refused call
-- or authentication inserts one on its own. Events outlive what they name: no foreign keys.
-- Times are epoch milliseconds; "" stands for a member that does not apply.
CREATE TABLE audit_events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    created          INTEGER NOT NULL,
    request_id       TEXT NOT NULL,
    -- The project whose admin reads the event; '' for identity events, logins and refused
    -- authentications, which the operator admin reads.
    project_id       TEXT NOT NULL COLLATE BINARY,
    user_id          TEXT NOT NULL COLLATE BINARY,
    user_name        TEXT NOT NULL,
    domain_id        TEXT NOT NULL,
    domain_name      TEXT NOT NULL,
    actor_project_id TEXT NOT NULL,
    auth_method      TEXT NOT NULL,
    credential       TEXT NOT NULL, -- the AK or a token's fingerprint, never a secret
    client_ip        TEXT NOT NULL,
    action           TEXT NOT NULL COLLATE BINARY,
    target_type      TEXT NOT NULL,
    target_id        TEXT NOT NULL COLLATE BINARY,
    status           INTEGER NOT NULL,
    code             TEXT NOT NULL,
    task_id          TEXT NOT NULL
);

-- A project's events newest first (GET /v3/{project_id}/audit-events; '' the operator's).
CREATE INDEX audit_events_by_project ON audit_events (project_id, created, id);
-- The retention sweep.
CREATE INDEX audit_events_by_time ON audit_events (created);
