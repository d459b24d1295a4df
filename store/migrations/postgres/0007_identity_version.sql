-- 0007_identity_version: one number that grows with every committed change to what a token
-- validation reads (store/identityversion.go), so that every replica can remember successful
-- validations for as long as it has not moved (iam/validation_cache.go). PostgreSQL only: the
-- SQLite engine counts its own writes in the memory of its only writer process.
--
-- A validation (auth.md §5.6, §4.3) reads the token by its hash, its user, the user's domain,
-- the scoped project and the role assignments with their roles: exactly the tables below. The
-- version is bumped by triggers rather than by the Go code of each write path, so that no write
-- path, present or future, can forget it:
-- * every INSERT, UPDATE or DELETE of a row of users, domains, projects, roles and
--   role_assignments, and every UPDATE or DELETE of a token (a revocation, the purge of expired
--   ones). Inserting a token cannot change a validation already made: it adds a row under a new
--   hash, and only successful validations are remembered. Logins therefore do not bump it.
-- * The triggers are deferred to the commit: the version row is locked as the transaction's
--   last lock, after every row lock the transaction takes, so two identity writes cannot
--   deadlock over it, and it is held only while the transaction commits. The row is updated
--   once per transaction (a transaction-local setting remembers it), however many rows changed.
-- * The change and the bump commit together: a replica that reads the version after the
--   commit sees the bump; one that read it before validates against the state before and keeps
--   the result under the old number, which is never current again.
CREATE TABLE identity_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO identity_version (id, version) VALUES (1, 1);

CREATE FUNCTION identity_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('kps.identity_version_bumped', true) IS DISTINCT FROM 'on' THEN
        UPDATE identity_version SET version = version + 1 WHERE id = 1;
        PERFORM set_config('kps.identity_version_bumped', 'on', true);
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER identity_version_users AFTER INSERT OR UPDATE OR DELETE ON users
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION identity_version_bump();
CREATE CONSTRAINT TRIGGER identity_version_domains AFTER INSERT OR UPDATE OR DELETE ON domains
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION identity_version_bump();
CREATE CONSTRAINT TRIGGER identity_version_projects AFTER INSERT OR UPDATE OR DELETE ON projects
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION identity_version_bump();
CREATE CONSTRAINT TRIGGER identity_version_roles AFTER INSERT OR UPDATE OR DELETE ON roles
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION identity_version_bump();
CREATE CONSTRAINT TRIGGER identity_version_role_assignments AFTER INSERT OR UPDATE OR DELETE ON role_assignments
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION identity_version_bump();
CREATE CONSTRAINT TRIGGER identity_version_tokens AFTER UPDATE OR DELETE ON tokens
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION identity_version_bump();

-- TRUNCATE has no row triggers: a statement trigger, at once (nothing in the service truncates).
CREATE TRIGGER identity_version_truncate AFTER TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION identity_version_bump();
CREATE TRIGGER identity_version_truncate AFTER TRUNCATE ON domains
    FOR EACH STATEMENT EXECUTE FUNCTION identity_version_bump();
CREATE TRIGGER identity_version_truncate AFTER TRUNCATE ON projects
    FOR EACH STATEMENT EXECUTE FUNCTION identity_version_bump();
CREATE TRIGGER identity_version_truncate AFTER TRUNCATE ON roles
    FOR EACH STATEMENT EXECUTE FUNCTION identity_version_bump();
CREATE TRIGGER identity_version_truncate AFTER TRUNCATE ON role_assignments
    FOR EACH STATEMENT EXECUTE FUNCTION identity_version_bump();
CREATE TRIGGER identity_version_truncate AFTER TRUNCATE ON tokens
    FOR EACH STATEMENT EXECUTE FUNCTION identity_version_bump();
