-- 0012_rotations: staged key rotations over servers (kps-v3-api.md §7, an OpenKPS extension;
-- SQLite, mirrored by migrations/postgres/0012).
--
-- A rotation's state and its servers' progress live here, so that it survives a restart of the
-- service: every step is one AdvanceRotation transaction (store/rotation.go), which records the
-- outcome of the tasks that ended and submits the next ones in the same commit.
CREATE TABLE rotations (
    project_id   TEXT NOT NULL,
    id           TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    keypair_name TEXT NOT NULL,
    from_keypair TEXT NOT NULL DEFAULT '',
    batch_size   INTEGER NOT NULL,
    max_failures INTEGER NOT NULL,
    canary       INTEGER NOT NULL DEFAULT 0,
    canary_done  INTEGER NOT NULL DEFAULT 0,
    failed_base  INTEGER NOT NULL DEFAULT 0, -- failures before the last resume of a halt: not counted again
    may_export   INTEGER NOT NULL DEFAULT 0,
    state        TEXT NOT NULL CHECK (state IN ('RUNNING', 'PAUSED', 'HALTED', 'COMPLETED', 'CANCELLED')),
    reason       TEXT NOT NULL DEFAULT '',
    private_key  BLOB, -- sealed (kps.RotationKeyAAD); NULL when the hosted key verifies, or once ended
    login        BLOB, -- sealed login credential given for the hosts (kps.RotationLoginAAD); NULL: the service's own; erased once ended
    created      INTEGER NOT NULL,
    updated      INTEGER NOT NULL,
    PRIMARY KEY (project_id, id)
);
CREATE INDEX rotations_by_project ON rotations (project_id, created DESC, id);

CREATE TABLE rotation_servers (
    project_id  TEXT NOT NULL,
    rotation_id TEXT NOT NULL,
    seq         INTEGER NOT NULL, -- rotation order
    server_id   TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'SKIPPED')),
    task_id     TEXT NOT NULL DEFAULT '',
    attempts    INTEGER NOT NULL DEFAULT 0,
    error_code  TEXT NOT NULL DEFAULT '',
    error_msg   TEXT NOT NULL DEFAULT '',
    updated     INTEGER NOT NULL,
    PRIMARY KEY (project_id, rotation_id, seq),
    UNIQUE (project_id, rotation_id, server_id)
);
-- The planner's lookup of a task's rotation, and a rotation's servers in flight.
CREATE INDEX rotation_servers_by_task ON rotation_servers (task_id); -- not partial: a parameter cannot prove task_id <> ''
CREATE INDEX rotation_servers_running ON rotation_servers (project_id, rotation_id) WHERE state = 'RUNNING';
