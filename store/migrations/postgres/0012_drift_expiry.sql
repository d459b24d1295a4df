-- 0011_drift_expiry: expiring bindings and drift checks (OpenKPS extensions, kps-v3-api.md §7;
-- postgres, mirrored by migrations/sqlite/0011).

-- A bind's expiry (epoch ms; NULL: none), taken at submission and given to the binding by the
-- bind's success. A binding whose expires_at has passed is unbound by the service itself; the
-- expiry's UNBIND clears it in the transaction that submits it.
ALTER TABLE tasks ADD COLUMN expires_at BIGINT;
ALTER TABLE bindings ADD COLUMN expires_at BIGINT;
CREATE INDEX bindings_expiring ON bindings (expires_at) WHERE expires_at IS NOT NULL;

-- The last drift check of a server (epoch ms; 0: never) and its summary, a JSON object.
ALTER TABLE servers ADD COLUMN last_drift_check BIGINT NOT NULL DEFAULT 0;
ALTER TABLE servers ADD COLUMN drift TEXT NOT NULL DEFAULT '';

-- A drift check: its per-server results as one JSON array, written when it ends.
CREATE TABLE drift_checks (
    id         TEXT NOT NULL PRIMARY KEY,
    project_id TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('RUNNING', 'DONE', 'INTERRUPTED')),
    scheduled  BOOLEAN NOT NULL DEFAULT FALSE,
    servers    TEXT NOT NULL, -- JSON array of the server IDs asked
    results    TEXT NOT NULL DEFAULT '[]',
    created    BIGINT NOT NULL,
    finished   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX drift_checks_by_project ON drift_checks (project_id, created);
