-- 0005_tasks_by_server: the tasks of one server in insertion order, for UnconfirmedKeys (the
-- keys of binds that failed since the server's last success), which runs before every task.
-- Without it the lookup walks every FAILED and every retained SUCCESS task of the project.
CREATE INDEX tasks_by_server ON tasks (project_id, server_id, seq);
