-- 0006_failed_task_list: the failed-task list of a project read from one index alone
-- (store/task.go, scanFailedTasks; docs/query-plans.md). Failed tasks accumulate without bound
-- and a project's failures are spread over the whole table, one heap page each: reading a page
-- of 1,000 of them through tasks_by_project_phase touched 1,000 heap pages with a million tasks
-- in the table against 23 with a thousand. This index holds, in the list's order (§4.1), every
-- column the list shows, so the page and its total are an index-only scan of consecutive index
-- pages whatever the size of the table.
--
-- Partial: only FAILED rows. SUCCESS rows (the bulk, until purged) and READY/RUNNING rows (few,
-- bounded by the queue) never enter it, so submitting and claiming cost what they did; a task
-- adds one entry when it fails. The statements name the phase as a literal, which lets the
-- planner match the predicate in a generic (prepared) plan too.
--
-- Differs from SQLite's 0006 because PostgreSQL has INCLUDE: the listed columns ride in the
-- leaf entries without being sort keys. An index entry must stay under about 2,700 bytes; the
-- store caps error_msg at 1,000 bytes (server names are at most 255 characters, IDs 255 bytes),
-- and the longer messages a previous release may have stored are cut here first (250
-- characters are at most 1,000 bytes).
--
-- Index-only scans need the visibility map, which autovacuum maintains; a table loaded in bulk
-- should be vacuumed (VACUUM ANALYZE tasks) before it is measured.
UPDATE tasks SET error_msg = left(error_msg, 250) WHERE octet_length(error_msg) > 1000;
CREATE INDEX tasks_failed_list ON tasks (project_id, created DESC, id)
    INCLUDE (operation, phase, server_id, server_name, keypair_name, error_code, error_msg)
    WHERE phase = 'FAILED';
