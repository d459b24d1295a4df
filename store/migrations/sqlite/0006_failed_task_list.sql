-- 0006_failed_task_list: the failed-task list of a project read from one index alone
-- (store/task.go, scanFailedTasks; docs/query-plans.md). Failed tasks accumulate without bound
-- and a project's failures are spread over the whole table: reading a page of 1,000 of them by
-- rowid touched pages all over a million-task table. This index holds, in the list's order
-- (§4.1), every column the list shows, so the page and its total are read from consecutive
-- index pages whatever the size of the table.
--
-- Partial: only FAILED rows. SUCCESS rows (the bulk, until purged) and READY/RUNNING rows (few,
-- bounded by the queue) never enter it, so submitting and claiming cost what they did; a task
-- adds one entry when it fails. The statements name the phase as a literal: SQLite uses a
-- partial index only for a query whose WHERE clause spells out its predicate.
--
-- Differs from PostgreSQL's 0006 because SQLite has no INCLUDE: the listed columns are trailing
-- key columns instead, after the sort keys (project_id, created DESC, id) that are unique per
-- row, so they change nothing in the order. The error_msg cap of 1,000 bytes that PostgreSQL's
-- index needs is applied by the store on both engines; SQLite's index has no such limit, so
-- older rows are left as they are.
CREATE INDEX tasks_failed_list ON tasks (project_id, created DESC, id, operation, phase, server_id,
    server_name, keypair_name, error_code, error_msg)
    WHERE phase = 'FAILED';
