-- 0008_task_writes_fair_claims (issue 13, docs/SECURITY.md §3 and §5).
--
-- Only writes the service may have made are undone. A task records, before its host job may
-- change the host, that it reached the write of its key (key_write_reached: authorized_keys is
-- about to get the bind's key, which the file did not hold) or the change of the daemon's
-- configuration (config_write_reached: password login is about to be turned off). The next
-- task of the server removes the key of a failed bind, or restores password login, only when
-- the failed bind had reached that step (store/task.go, UnconfirmedKeys). Before this, every
-- failed bind since the last success counted, so a bind refused at login (KPS.6603) of a key
-- that someone else had put on the host made the next task delete that key.
ALTER TABLE tasks ADD COLUMN key_write_reached INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN config_write_reached INTEGER NOT NULL DEFAULT 0;

-- Tasks that ran before this migration recorded nothing. A failed bind counts as having
-- reached its write unless its code says it failed before (unreachable, refused login,
-- changed host key, no privileges, no such user) — except when the message says the outcome
-- of a cut write could not be checked, which those codes then describe. A bind still RUNNING
-- (a replica of the previous release) counts too. The configuration: the rule of the previous
-- release (an interrupted, timed-out or lost disabling bind).
UPDATE tasks SET key_write_reached = 1
WHERE operation IN ('RESET', 'REPLACE') AND attempt > 0
  AND (phase = 'RUNNING'
       OR (phase = 'FAILED'
           AND (error_code NOT IN ('KPS.6601', 'KPS.6603', 'KPS.6604', 'KPS.6607', 'KPS.6608')
                OR error_msg LIKE '%either the old or the new content%')));
UPDATE tasks SET config_write_reached = 1
WHERE operation IN ('RESET', 'REPLACE') AND disable_password AND attempt > 0
  AND (phase = 'RUNNING'
       OR (phase = 'FAILED' AND error_code IN ('KPS.6609', 'KPS.6602', 'KPS.6610')));

-- One project cannot starve another. The claim takes the oldest READY task of the project
-- with the fewest RUNNING tasks (store/sqlite.go, sqliteClaimTask): it walks the projects that
-- have READY tasks through this index (one lookup per project, not one row per task) and takes
-- each project's oldest task from it.
CREATE INDEX tasks_ready_by_project ON tasks (project_id, created, seq) WHERE phase = 'READY';
