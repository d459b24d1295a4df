-- 0009_login_sources: a stored credential or hosted key goes only where an admin sent it
-- (docs/SECURITY.md §1–2; docs/decisions.md, "Login sources and admin-set reach"). As SQLite's
-- 0009, with BOOLEAN and COLLATE "C" (SQLite's byte-wise text order) for this engine.
--
-- servers.reach_by_admin: whether a project admin set the server's address, port, user and host
-- keys last. Only such a server is trusted on first use with a stored credential or a hosted
-- key. Servers registered before this migration may have been edited by a member, so they
-- start as not admin-set (the safe side): an admin confirms one by a PUT of its address, or
-- pins its host keys.
ALTER TABLE servers ADD COLUMN reach_by_admin BOOLEAN NOT NULL DEFAULT FALSE;

-- tasks.login_source and tasks.login_keypair: what the worker logs in with, decided when the
-- task was submitted ('caller', 'service', or 'hosted' with the key pair whose hosted private
-- key it is). Queued tasks of the caller's credential keep it; the others were submitted under
-- the old rules and are left empty, which the worker refuses (KPS.6609: submit again).
ALTER TABLE tasks ADD COLUMN login_source TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN login_keypair TEXT COLLATE "C" NOT NULL DEFAULT '';
UPDATE tasks SET login_source = 'caller' WHERE caller_auth;
