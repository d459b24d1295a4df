-- 0012_rotations: staged key rotations over servers (kps-v3-api.md §7, an OpenKPS extension;
-- PostgreSQL, mirrored by migrations/sqlite/0012).
--
-- A rotation's state and its servers' progress live here, so that it survives a restart of the
-- service: every step is one AdvanceRotation transaction (store/rotation.go), which records the
-- outcome of the tasks that ended and submits the next ones in the same commit.
CREATE TABLE rotations (
    project_id   TEXT COLLATE "C" NOT NULL,
    id           TEXT COLLATE "C" NOT NULL,
    user_id      TEXT COLLATE "C" NOT NULL,
    keypair_name TEXT COLLATE "C" NOT NULL,
    from_keypair TEXT COLLATE "C" NOT NULL DEFAULT '',
    batch_size   INTEGER NOT NULL,
    max_failures INTEGER NOT NULL,
    canary       INTEGER NOT NULL DEFAULT 0,
    canary_done  BOOLEAN NOT NULL DEFAULT FALSE,
    failed_base  INTEGER NOT NULL DEFAULT 0, -- failures before the last resume of a halt: not counted again
    may_export   BOOLEAN NOT NULL DEFAULT FALSE,
    state        TEXT COLLATE "C" NOT NULL CHECK (state IN ('RUNNING', 'PAUSED', 'HALTED', 'COMPLETED', 'CANCELLED')),
    reason       TEXT COLLATE "C" NOT NULL DEFAULT '',
    private_key  BYTEA, -- sealed (kps.RotationKeyAAD); NULL when the hosted key verifies, or once ended
    login        BYTEA, -- sealed login credential given for the hosts (kps.RotationLoginAAD); NULL: the service's own; erased once ended
    created      BIGINT NOT NULL,
    updated      BIGINT NOT NULL,
    PRIMARY KEY (project_id, id)
);
CREATE INDEX rotations_by_project ON rotations (project_id, created DESC, id);

CREATE TABLE rotation_servers (
    project_id  TEXT COLLATE "C" NOT NULL,
    rotation_id TEXT COLLATE "C" NOT NULL,
    seq         INTEGER NOT NULL, -- rotation order
    server_id   TEXT COLLATE "C" NOT NULL,
    state       TEXT COLLATE "C" NOT NULL CHECK (state IN ('PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'SKIPPED')),
    task_id     TEXT COLLATE "C" NOT NULL DEFAULT '',
    attempts    INTEGER NOT NULL DEFAULT 0,
    error_code  TEXT COLLATE "C" NOT NULL DEFAULT '',
    error_msg   TEXT COLLATE "C" NOT NULL DEFAULT '',
    updated     BIGINT NOT NULL,
    PRIMARY KEY (project_id, rotation_id, seq),
    UNIQUE (project_id, rotation_id, server_id)
);
-- The planner's lookup of a task's rotation, and a rotation's servers in flight.
CREATE INDEX rotation_servers_by_task ON rotation_servers (task_id); -- not partial: a parameter cannot prove task_id <> ''
CREATE INDEX rotation_servers_running ON rotation_servers (project_id, rotation_id) WHERE state = 'RUNNING';
