-- 0004_task_versions: one row per project whose tasks changed, its version bumped in the same
-- transaction as every change to the project's tasks (store/taskversion.go). Replicas read it to
-- know whether a task list they rendered earlier is still current. PostgreSQL only: the SQLite
-- engine keeps these versions in the memory of its only writer process.
CREATE TABLE task_versions (
    project_id TEXT COLLATE "C" PRIMARY KEY,
    version    BIGINT NOT NULL
);
