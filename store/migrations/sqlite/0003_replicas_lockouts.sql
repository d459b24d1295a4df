-- 0003_replicas_lockouts: what several replicas share beyond the domain data (SQLite; the
-- embedded engine runs one process, but both engines keep one schema and one code path).

-- The replicas alive on this database, by heartbeat. A task that needs the caller's credential
-- (kps-v3-api.md §2.11: "kept in memory, never stored") names the replica holding it; only that
-- replica claims the task while its heartbeat is fresh. "Alive" is expires >= now.
CREATE TABLE replicas (
    id      TEXT PRIMARY KEY,
    expires INTEGER NOT NULL -- epoch ms
);

-- The replica holding the caller's credential of a caller_auth task; '' for every other task
-- (and for tasks submitted before this migration, which any replica may claim and fail).
ALTER TABLE tasks ADD COLUMN holder TEXT NOT NULL DEFAULT '';

-- Failed-authentication counters and locks of auth.md §12.4, by opaque key (a hash of the
-- login name, the (AK, client IP) pair or the client IP). A row says nothing any more once
-- window_end and locked_until have passed; such rows are purged.
CREATE TABLE lockouts (
    lock_key     TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    window_end   INTEGER NOT NULL, -- epoch ms
    locked_until INTEGER NOT NULL  -- epoch ms; 0 when never locked
);
CREATE INDEX lockouts_by_window_end ON lockouts (window_end);
