-- 0003_replicas_lockouts: what several replicas share beyond the domain data (PostgreSQL),
-- mirroring migrations/sqlite/0003_replicas_lockouts.sql. Differences, as in 0001: BIGINT times,
-- COLLATE "C" text. Additive only: replicas of the previous release keep working during a
-- rolling upgrade (they leave holder empty, which is what they meant).

-- The replicas alive on this database, by heartbeat. A task that needs the caller's credential
-- (kps-v3-api.md §2.11: "kept in memory, never stored") names the replica holding it; only that
-- replica claims the task while its heartbeat is fresh. "Alive" is expires >= now.
CREATE TABLE replicas (
    id      TEXT COLLATE "C" PRIMARY KEY,
    expires BIGINT NOT NULL -- epoch ms
);

-- The replica holding the caller's credential of a caller_auth task; '' for every other task.
ALTER TABLE tasks ADD COLUMN holder TEXT COLLATE "C" NOT NULL DEFAULT '';

-- Failed-authentication counters and locks of auth.md §12.4, by opaque key. A row says nothing
-- any more once window_end and locked_until have passed; such rows are purged.
CREATE TABLE lockouts (
    lock_key     TEXT COLLATE "C" PRIMARY KEY,
    failures     INTEGER NOT NULL,
    window_end   BIGINT NOT NULL, -- epoch ms
    locked_until BIGINT NOT NULL  -- epoch ms; 0 when never locked
);
CREATE INDEX lockouts_by_window_end ON lockouts (window_end);

-- The list of a project's tasks in a phase chooses its page from this index alone, by an
-- index-only scan, and reads only the page's rows from the table (store/task.go, listTasks).
-- SQLite's index entries carry seq already (it is the rowid); PostgreSQL's need INCLUDE.
DROP INDEX tasks_by_project_phase;
CREATE INDEX tasks_by_project_phase ON tasks (project_id, phase, created DESC, id) INCLUDE (seq);
