-- 0014_rotation_totals_drift_lease: a rotation's totals kept on its row, and the lease of a
-- running drift check (kps-v3-api.md §7.2, §8; sqlite, mirrored by migrations/postgres/0014).

-- A rotation's servers per state, kept by every transaction that changes a server's state (in
-- the one that changes it, the rotation's row locked), so that a step, a read and a list do not
-- count the rotation's servers again: at 1,000 servers that recount was most of a step.
ALTER TABLE rotations ADD COLUMN n_pending INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rotations ADD COLUMN n_running INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rotations ADD COLUMN n_succeeded INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rotations ADD COLUMN n_failed INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rotations ADD COLUMN n_skipped INTEGER NOT NULL DEFAULT 0;
UPDATE rotations SET
    n_pending = (SELECT COUNT(*) FROM rotation_servers rs
        WHERE rs.project_id = rotations.project_id AND rs.rotation_id = rotations.id AND rs.state = 'PENDING'),
    n_running = (SELECT COUNT(*) FROM rotation_servers rs
        WHERE rs.project_id = rotations.project_id AND rs.rotation_id = rotations.id AND rs.state = 'RUNNING'),
    n_succeeded = (SELECT COUNT(*) FROM rotation_servers rs
        WHERE rs.project_id = rotations.project_id AND rs.rotation_id = rotations.id AND rs.state = 'SUCCEEDED'),
    n_failed = (SELECT COUNT(*) FROM rotation_servers rs
        WHERE rs.project_id = rotations.project_id AND rs.rotation_id = rotations.id AND rs.state = 'FAILED'),
    n_skipped = (SELECT COUNT(*) FROM rotation_servers rs
        WHERE rs.project_id = rotations.project_id AND rs.rotation_id = rotations.id AND rs.state = 'SKIPPED');

-- The rotations a step looks at, without reading the ended ones.
CREATE INDEX rotations_active ON rotations (created, id) WHERE state = 'RUNNING' OR n_running > 0;
-- A step's next servers: the pending ones in order, without walking past those already done.
CREATE INDEX rotation_servers_pending ON rotation_servers (project_id, rotation_id, seq) WHERE state = 'PENDING';

-- A running drift check is held by the process running it until lease (epoch ms), which that
-- process renews; a check whose lease passed is INTERRUPTED by any replica (its process died).
-- The checks running before this migration hold none, and are interrupted at once.
ALTER TABLE drift_checks ADD COLUMN lease INTEGER NOT NULL DEFAULT 0;
CREATE INDEX drift_checks_running ON drift_checks (lease) WHERE state = 'RUNNING';
