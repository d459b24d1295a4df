package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/openkps/kps"
)

// Identity lookups return (nil, nil) when nothing matches: which KPS code a miss means depends
// on the caller (a bad login, a foreign project, …). Changes to a missing record are KPS.6110.
//
// Filters use "column = COALESCE(?, column)": an unset (NULL) filter matches every row, and
// unlike "? IS NULL OR column = ?" the placeholder takes its type from the column, which
// PostgreSQL needs to prepare the statement.

const (
	countDomains       = `SELECT COUNT(*) FROM domains`
	selectRoleIDByName = `SELECT id FROM roles WHERE name = ?`

	insertDomain  = `INSERT INTO domains (id, name, enabled, description, created) VALUES (?, ?, ?, ?, ?)`
	insertProject = `INSERT INTO projects (id, name, domain_id, enabled, description, is_default, created)
VALUES (?, ?, ?, ?, ?, ?, ?)`
	insertUser = `INSERT INTO users (id, name, domain_id, enabled, description, password_hash,
    password_changed, default_project_id, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	insertDomainAssignment = `INSERT INTO role_assignments (user_id, role_id, domain_id) VALUES (?, ?, ?)`

	domainColumns  = `d.id, d.name, d.enabled, d.description, d.created`
	selectDomainBy = `SELECT ` + domainColumns + ` FROM domains d WHERE `
	domainFilter   = `
WHERE d.name = COALESCE(?, d.name) AND d.enabled = COALESCE(?, d.enabled)`
	listDomains = `SELECT ` + domainColumns + `, COUNT(*) OVER () FROM domains d` + domainFilter + `
ORDER BY d.name
LIMIT ? OFFSET ?`
	countDomainsWhere = `SELECT COUNT(*) FROM domains d` + domainFilter
	updateDomain      = `UPDATE domains SET name = ?, enabled = ?, description = ? WHERE id = ?`
	deleteDomain      = `DELETE FROM domains WHERE id = ?`

	projectColumns  = `p.id, p.name, p.domain_id, p.enabled, p.description, p.is_default, p.created`
	selectProjectBy = `SELECT ` + projectColumns + ` FROM projects p WHERE `
	// The role holder holds a role on the project itself or on its domain (auth.md §3.4).
	projectFilter = `
WHERE p.domain_id = COALESCE(?, p.domain_id) AND p.name = COALESCE(?, p.name)
  AND p.enabled = COALESCE(?, p.enabled)
  AND (CAST(? AS TEXT) IS NULL OR EXISTS (
    SELECT 1 FROM role_assignments a
    WHERE a.user_id = ? AND (a.project_id = p.id OR a.domain_id = p.domain_id)))`
	listProjects = `SELECT ` + projectColumns + `, COUNT(*) OVER () FROM projects p` + projectFilter + `
ORDER BY p.name, p.id
LIMIT ? OFFSET ?`
	countProjectsWhere = `SELECT COUNT(*) FROM projects p` + projectFilter
	updateProject      = `UPDATE projects SET name = ?, enabled = ?, description = ? WHERE id = ?`
	deleteProject      = `DELETE FROM projects WHERE id = ?`
	deleteProjectsOf   = `DELETE FROM projects WHERE domain_id = ?`
	// A project that still holds key pairs, servers or unfinished tasks is not deleted: their
	// sealed secrets would stay behind, out of everybody's reach (docs/decisions.md, "Identity
	// management"). Finished tasks are history and go with the project.
	projectInUse = `SELECT 1 WHERE EXISTS (SELECT 1 FROM keypairs WHERE project_id = ?)
   OR EXISTS (SELECT 1 FROM servers WHERE project_id = ?)
   OR EXISTS (SELECT 1 FROM tasks WHERE project_id = ? AND phase IN ('READY', 'RUNNING'))`
	domainInUse = `SELECT 1 FROM projects p WHERE p.domain_id = ?
  AND (EXISTS (SELECT 1 FROM keypairs k WHERE k.project_id = p.id)
    OR EXISTS (SELECT 1 FROM servers s WHERE s.project_id = p.id)
    OR EXISTS (SELECT 1 FROM tasks t WHERE t.project_id = p.id AND t.phase IN ('READY', 'RUNNING')))`
	deleteProjectTasks = `DELETE FROM tasks WHERE project_id = ?`
	// The project's rotations (their sealed keys and logins with them, whatever their state:
	// the servers they rotate are gone) and drift checks are its history too.
	deleteProjectRotationServers = `DELETE FROM rotation_servers WHERE project_id = ?`
	deleteProjectRotations       = `DELETE FROM rotations WHERE project_id = ?`
	deleteProjectDriftChecks     = `DELETE FROM drift_checks WHERE project_id = ?`
	inDomain                     = ` WHERE project_id IN (SELECT id FROM projects WHERE domain_id = ?)`
	deleteDomainRotationServers  = `DELETE FROM rotation_servers` + inDomain
	deleteDomainRotations        = `DELETE FROM rotations` + inDomain
	deleteDomainDriftChecks      = `DELETE FROM drift_checks` + inDomain
	deleteDomainTasks            = `DELETE FROM tasks WHERE project_id IN (SELECT id FROM projects WHERE domain_id = ?)
RETURNING project_id`
	// A user's default project may be deleted; the user then has none.
	clearDefaultProject   = `UPDATE users SET default_project_id = NULL WHERE default_project_id = ?`
	clearDefaultProjectOf = `UPDATE users SET default_project_id = NULL
WHERE default_project_id IN (SELECT id FROM projects WHERE domain_id = ?)`

	userColumns = `u.id, u.name, u.domain_id, u.enabled, u.description, u.password_hash,
    u.password_changed, COALESCE(u.default_project_id, ''), u.created`
	selectUserBy = `SELECT ` + userColumns + ` FROM users u WHERE `
	userFilter   = `
WHERE u.domain_id = COALESCE(?, u.domain_id) AND u.name = COALESCE(?, u.name)
  AND u.enabled = COALESCE(?, u.enabled)`
	listUsers = `SELECT ` + userColumns + `, COUNT(*) OVER () FROM users u` + userFilter + `
ORDER BY u.name, u.id
LIMIT ? OFFSET ?`
	countUsersWhere = `SELECT COUNT(*) FROM users u` + userFilter
	updateUser      = `UPDATE users SET name = ?, enabled = ?, description = ?, default_project_id = ?
WHERE id = ?`
	deleteUser           = `DELETE FROM users WHERE id = ?`
	deleteUsersOf        = `DELETE FROM users WHERE domain_id = ?`
	updatePasswordHash   = `UPDATE users SET password_hash = ?, password_changed = ? WHERE id = ?`
	updateRehashPassword = `UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?`
)

// noLimit stands for "all rows" in LIMIT: a zero Page.Limit of the identity lists.
const noLimit = 1<<31 - 1

func pageLimit(p kps.Page) int {
	if p.Limit <= 0 {
		return noLimit
	}
	return p.Limit
}

func errDomainNotFound(id string) error {
	return kps.Errorf(kps.ErrIdentityNotFound, "The domain %s could not be found.", id)
}

func errProjectNotFound(id string) error {
	return kps.Errorf(kps.ErrIdentityNotFound, "The project %s could not be found.", id)
}

func errUserNotFound(id string) error {
	return kps.Errorf(kps.ErrIdentityNotFound, "The user %s could not be found.", id)
}

// Bootstrap creates the operator domain with its default project and the admin user holding a
// domain-level admin assignment, unless any domain exists (auth.md §3.7).
func (db *DB) Bootstrap(ctx context.Context, b kps.Bootstrap) (bool, error) {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	created, err := bootstrap(ctx, tx, b)
	if err != nil || !created {
		return false, err
	}
	return true, tx.Commit()
}

func bootstrap(ctx context.Context, tx *txn, b kps.Bootstrap) (bool, error) {
	// Replicas starting together: one bootstraps, the others then see its domain.
	if err := tx.lock(ctx, lockBootstrap); err != nil {
		return false, err
	}
	var n int
	if err := tx.queryRow(ctx, countDomains).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	// The roles exist from the migrations on.
	var adminRole string
	if err := tx.queryRow(ctx, selectRoleIDByName, string(kps.RoleAdmin)).Scan(&adminRole); err != nil {
		return false, fmt.Errorf("role %s: %w", kps.RoleAdmin, err)
	}
	d := &kps.Domain{ID: b.DomainID, Name: b.DomainName, Enabled: true}
	p, err := createDomain(ctx, tx, d, b.ProjectName)
	if err != nil {
		return false, fmt.Errorf("domain: %w", err)
	}
	u := &kps.User{Name: b.AdminName, DomainID: d.ID, Enabled: true, PasswordHash: b.AdminPasswordHash,
		DefaultProjectID: p.ID}
	if err := createUser(ctx, tx, u); err != nil {
		return false, fmt.Errorf("user: %w", err)
	}
	if _, err := tx.exec(ctx, insertDomainAssignment, u.ID, adminRole, d.ID); err != nil {
		return false, fmt.Errorf("role assignment: %w", err)
	}
	return true, nil
}

// newID returns 32 lowercase hex characters from 128 random bits (auth.md §3.1).
func newID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// Domains -------------------------------------------------------------------------------------

// CreateDomain inserts d under a new ID together with its default project named region
// (auth.md §3.2), and returns that project. A taken name is KPS.6111. d.ID is ignored: only the
// bootstrap chooses a domain's ID.
func (db *DB) CreateDomain(ctx context.Context, d *kps.Domain, region string) (*kps.Project, error) {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	d.ID = ""
	p, err := createDomain(ctx, tx, d, region)
	if err != nil {
		return nil, err
	}
	tx.auditTarget(d.ID)
	return p, tx.Commit()
}

// createDomain inserts d under d.ID, or a new random ID when d.ID is empty.
func createDomain(ctx context.Context, tx *txn, d *kps.Domain, region string) (*kps.Project, error) {
	id := d.ID
	if id == "" {
		id = newID()
	}
	_, err := tx.exec(ctx, insertDomain, id, d.Name, d.Enabled, d.Description, millis(tx.now))
	if tx.eng.isUniqueViolation(err) {
		return nil, kps.Errorf(kps.ErrIdentityConflict, "The domain name '%s' is already taken.", d.Name)
	}
	if err != nil {
		return nil, err
	}
	d.ID, d.Created = id, tx.now
	p := &kps.Project{Name: region, DomainID: id, Enabled: true, IsDefault: true}
	if err := insertProjectRow(ctx, tx, p); err != nil {
		return nil, err
	}
	return p, nil
}

// DomainByID returns the domain, or nil when there is none.
func (db *DB) DomainByID(ctx context.Context, id string) (*kps.Domain, error) {
	return db.domainWhere(ctx, `d.id = ?`, id)
}

// DomainByName returns the domain, or nil when there is none.
func (db *DB) DomainByName(ctx context.Context, name string) (*kps.Domain, error) {
	return db.domainWhere(ctx, `d.name = ?`, name)
}

func (db *DB) domainWhere(ctx context.Context, where string, args ...any) (*kps.Domain, error) {
	return nilIfNone(scanDomain(db.read.QueryRowContext(ctx, db.bind(selectDomainBy+where), args...)))
}

func findDomain(ctx context.Context, tx *txn, id string) (*kps.Domain, error) {
	d, err := nilIfNone(scanDomain(tx.queryRow(ctx, selectDomainBy+`d.id = ?`, id)))
	if err == nil && d == nil {
		err = errDomainNotFound(id)
	}
	return d, err
}

func scanDomain(row scanner, extra ...any) (*kps.Domain, error) {
	var (
		d       kps.Domain
		created int64
	)
	if err := row.Scan(append([]any{&d.ID, &d.Name, &d.Enabled, &d.Description, &created}, extra...)...); err != nil {
		return nil, err
	}
	d.Created = fromMillis(created)
	return &d, nil
}

// nilIfNone turns "no row" into (nil, nil), the identity lookups' miss.
func nilIfNone[T any](v *T, err error) (*T, error) {
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return v, err
}

// ListDomains returns a page of the matching domains ordered by name, and their total; a zero
// p.Limit means no limit.
func (db *DB) ListDomains(ctx context.Context, f kps.DomainFilter, p kps.Page) ([]kps.Domain, int, error) {
	args := []any{f.Name, f.Enabled}
	return list(ctx, db, listDomains, countDomainsWhere, args, p, scanDomain)
}

// list runs a filtered page query whose last column is COUNT(*) OVER (), falling back to the
// count query past the end, where no row carries the total.
func list[T any](ctx context.Context, db *DB, query, count string, args []any, p kps.Page,
	scan func(scanner, ...any) (*T, error)) ([]T, int, error) {
	tx, err := db.beginRead(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer tx.Rollback()
	rows, err := tx.query(ctx, query, append(args, pageLimit(p), p.Offset)...)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	items, total := []T{}, 0
	for rows.Next() {
		v, err := scan(rows, &total)
		if err != nil {
			return nil, 0, err
		}
		items = append(items, *v)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	if len(items) == 0 {
		if err := tx.queryRow(ctx, count, args...).Scan(&total); err != nil {
			return nil, 0, err
		}
	}
	return items, total, nil
}

// UpdateDomain applies u. Disabling the domain revokes the tokens of its users and scopes and
// deletes their temporary credentials (auth.md §5.5), in the same transaction.
func (db *DB) UpdateDomain(ctx context.Context, id string, u kps.DomainUpdate) (*kps.Domain, error) {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	d, err := findDomain(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	u.Apply(d)
	_, err = tx.exec(ctx, updateDomain, d.Name, d.Enabled, d.Description, id)
	if tx.eng.isUniqueViolation(err) {
		return nil, kps.Errorf(kps.ErrIdentityConflict, "The domain name '%s' is already taken.", d.Name)
	}
	if err != nil {
		return nil, err
	}
	if !d.Enabled {
		// Also when it was disabled already: revoking is idempotent, and no token of a
		// disabled domain may stay valid.
		if err := revokeDomain(ctx, tx, id); err != nil {
			return nil, err
		}
	}
	return d, tx.Commit()
}

// DeleteDomain removes the domain with its projects, users, role assignments, access keys,
// temporary credentials and finished tasks; a project still holding key pairs, servers or
// unfinished tasks refuses it (KPS.6111). Its tokens stay, revoked, so that they are reported
// as revoked until the expiry housekeeping deletes them.
func (db *DB) DeleteDomain(ctx context.Context, id string) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	d, err := findDomain(ctx, tx, id)
	if err != nil {
		return err
	}
	if inUse, err := tx.exists(ctx, domainInUse, id); err != nil || inUse {
		if err == nil {
			err = kps.Errorf(kps.ErrIdentityConflict,
				"The domain '%s' still has projects holding key pairs, servers or unfinished tasks.", d.Name)
		}
		return err
	}
	if err := revokeDomain(ctx, tx, id); err != nil {
		return err
	}
	// Users go first (their default projects point at the projects), and with them, by
	// ON DELETE CASCADE, their role assignments, access keys and temporary credentials.
	rows, err := tx.query(ctx, deleteDomainTasks, id)
	if err != nil {
		return err
	}
	changed, _, err := projectsOf(rows)
	if err != nil {
		return err
	}
	if err := tx.taskChanged(ctx, changed...); err != nil {
		return err
	}
	for _, q := range []string{deleteDomainRotationServers, deleteDomainRotations, deleteDomainDriftChecks,
		clearDefaultProjectOf, deleteUsersOf, deleteProjectsOf, deleteDomain} {
		if _, err := tx.exec(ctx, q, id); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Projects ------------------------------------------------------------------------------------

// CreateProject inserts p under a new ID in an existing domain; it is never a default project.
// A name taken in the domain is KPS.6111.
func (db *DB) CreateProject(ctx context.Context, p *kps.Project) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := findDomain(ctx, tx, p.DomainID); err != nil {
		return err
	}
	p.IsDefault = false
	if err := insertProjectRow(ctx, tx, p); err != nil {
		return err
	}
	tx.auditTarget(p.ID)
	return tx.Commit()
}

func insertProjectRow(ctx context.Context, tx *txn, p *kps.Project) error {
	id := newID()
	_, err := tx.exec(ctx, insertProject, id, p.Name, p.DomainID, p.Enabled, p.Description, p.IsDefault, millis(tx.now))
	if tx.eng.isUniqueViolation(err) {
		return errProjectNameTaken(p.Name)
	}
	if err != nil {
		return err
	}
	p.ID, p.Created = id, tx.now
	return nil
}

func errProjectNameTaken(name string) error {
	return kps.Errorf(kps.ErrIdentityConflict, "The project name '%s' is already taken in the domain.", name)
}

// ProjectByID returns the project, or nil when there is none.
func (db *DB) ProjectByID(ctx context.Context, id string) (*kps.Project, error) {
	return db.projectWhere(ctx, `p.id = ?`, id)
}

// ProjectByName returns the project of the domain, or nil when there is none.
func (db *DB) ProjectByName(ctx context.Context, domainID, name string) (*kps.Project, error) {
	return db.projectWhere(ctx, `p.domain_id = ? AND p.name = ?`, domainID, name)
}

func (db *DB) projectWhere(ctx context.Context, where string, args ...any) (*kps.Project, error) {
	return nilIfNone(scanProject(db.read.QueryRowContext(ctx, db.bind(selectProjectBy+where), args...)))
}

func findProject(ctx context.Context, tx *txn, id string) (*kps.Project, error) {
	p, err := nilIfNone(scanProject(tx.queryRow(ctx, selectProjectBy+`p.id = ?`, id)))
	if err == nil && p == nil {
		err = errProjectNotFound(id)
	}
	return p, err
}

func scanProject(row scanner, extra ...any) (*kps.Project, error) {
	var (
		p       kps.Project
		created int64
	)
	if err := row.Scan(append([]any{&p.ID, &p.Name, &p.DomainID, &p.Enabled, &p.Description, &p.IsDefault,
		&created}, extra...)...); err != nil {
		return nil, err
	}
	p.Created = fromMillis(created)
	return &p, nil
}

// ListProjects returns a page of the matching projects ordered by name, and their total; a zero
// p.Limit means no limit.
func (db *DB) ListProjects(ctx context.Context, f kps.ProjectFilter, p kps.Page) ([]kps.Project, int, error) {
	args := []any{f.DomainID, f.Name, f.Enabled, f.RoleHolder, f.RoleHolder}
	return list(ctx, db, listProjects, countProjectsWhere, args, p, scanProject)
}

// UpdateProject applies u; renaming the default project is KPS.6111. Disabling the project
// revokes the tokens scoped to it and deletes the temporary credentials bound to it (auth.md
// §5.5), in the same transaction.
func (db *DB) UpdateProject(ctx context.Context, id string, u kps.ProjectUpdate) (*kps.Project, error) {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	p, err := findProject(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	if p.IsDefault && u.Name != nil && *u.Name != p.Name {
		return nil, kps.Errorf(kps.ErrIdentityConflict,
			"The project '%s' is the default project of its domain and cannot be renamed.", p.Name)
	}
	u.Apply(p)
	_, err = tx.exec(ctx, updateProject, p.Name, p.Enabled, p.Description, id)
	if tx.eng.isUniqueViolation(err) {
		return nil, errProjectNameTaken(p.Name)
	}
	if err != nil {
		return nil, err
	}
	if !p.Enabled {
		if err := revokeProject(ctx, tx, id); err != nil {
			return nil, err
		}
	}
	return p, tx.Commit()
}

// DeleteProject removes a project other than its domain's default one (KPS.6111), with its role
// assignments and finished tasks; a project still holding key pairs, servers or unfinished
// tasks is KPS.6111 too. It revokes as disabling does, and users whose default project it was
// have none afterwards.
func (db *DB) DeleteProject(ctx context.Context, id string) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	p, err := findProject(ctx, tx, id)
	if err != nil {
		return err
	}
	if p.IsDefault {
		return kps.Errorf(kps.ErrIdentityConflict,
			"The project '%s' is the default project of its domain and cannot be deleted.", p.Name)
	}
	if inUse, err := tx.exists(ctx, projectInUse, id, id, id); err != nil || inUse {
		if err == nil {
			err = kps.Errorf(kps.ErrIdentityConflict,
				"The project '%s' still holds key pairs, servers or unfinished tasks.", p.Name)
		}
		return err
	}
	if err := revokeProject(ctx, tx, id); err != nil {
		return err
	}
	for _, q := range []string{deleteProjectTasks, deleteProjectRotationServers, deleteProjectRotations,
		deleteProjectDriftChecks, clearDefaultProject, deleteProject} {
		if _, err := tx.exec(ctx, q, id); err != nil {
			return err
		}
	}
	if err := tx.taskChanged(ctx, id); err != nil {
		return err
	}
	return tx.Commit()
}

// Users ---------------------------------------------------------------------------------------

// CreateUser inserts u under a new ID in an existing domain. A default project must lie in that
// domain (KPS.6003); a name taken in the domain is KPS.6111. A password hash counts as set now.
func (db *DB) CreateUser(ctx context.Context, u *kps.User) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := findDomain(ctx, tx, u.DomainID); err != nil {
		return err
	}
	if err := checkDefaultProject(ctx, tx, u); err != nil {
		return err
	}
	if err := createUser(ctx, tx, u); err != nil {
		return err
	}
	tx.auditTarget(u.ID)
	return tx.Commit()
}

func createUser(ctx context.Context, tx *txn, u *kps.User) error {
	id := newID()
	var changed int64
	if u.PasswordHash != "" {
		changed = millis(tx.now)
	}
	_, err := tx.exec(ctx, insertUser, id, u.Name, u.DomainID, u.Enabled, u.Description, u.PasswordHash, changed,
		nullString(u.DefaultProjectID), millis(tx.now))
	if tx.eng.isUniqueViolation(err) {
		return errUserNameTaken(u.Name)
	}
	if err != nil {
		return err
	}
	u.ID, u.Created, u.PasswordChangedAt = id, tx.now, fromMillis(changed)
	return nil
}

func errUserNameTaken(name string) error {
	return kps.Errorf(kps.ErrIdentityConflict, "The user name '%s' is already taken in the domain.", name)
}

// checkDefaultProject refuses a default project that does not exist or lies in another domain.
func checkDefaultProject(ctx context.Context, tx *txn, u *kps.User) error {
	if u.DefaultProjectID == "" {
		return nil
	}
	p, err := nilIfNone(scanProject(tx.queryRow(ctx, selectProjectBy+`p.id = ?`, u.DefaultProjectID)))
	if err != nil {
		return err
	}
	if p == nil || p.DomainID != u.DomainID {
		return kps.InvalidParameter("user.default_project_id")
	}
	return nil
}

// UserByID returns the user, or nil when there is none.
func (db *DB) UserByID(ctx context.Context, id string) (*kps.User, error) {
	return db.userWhere(ctx, `u.id = ?`, id)
}

// UserByName returns the user of the domain, or nil when there is none.
func (db *DB) UserByName(ctx context.Context, domainID, name string) (*kps.User, error) {
	return db.userWhere(ctx, `u.domain_id = ? AND u.name = ?`, domainID, name)
}

func (db *DB) userWhere(ctx context.Context, where string, args ...any) (*kps.User, error) {
	return nilIfNone(scanUser(db.read.QueryRowContext(ctx, db.bind(selectUserBy+where), args...)))
}

func findUser(ctx context.Context, tx *txn, id string) (*kps.User, error) {
	u, err := nilIfNone(scanUser(tx.queryRow(ctx, selectUserBy+`u.id = ?`, id)))
	if err == nil && u == nil {
		err = errUserNotFound(id)
	}
	return u, err
}

func scanUser(row scanner, extra ...any) (*kps.User, error) {
	var (
		u                kps.User
		changed, created int64
	)
	if err := row.Scan(append([]any{&u.ID, &u.Name, &u.DomainID, &u.Enabled, &u.Description, &u.PasswordHash,
		&changed, &u.DefaultProjectID, &created}, extra...)...); err != nil {
		return nil, err
	}
	u.PasswordChangedAt, u.Created = fromMillis(changed), fromMillis(created)
	return &u, nil
}

// ListUsers returns a page of the matching users ordered by name, and their total; a zero
// p.Limit means no limit.
func (db *DB) ListUsers(ctx context.Context, f kps.UserFilter, p kps.Page) ([]kps.User, int, error) {
	args := []any{f.DomainID, f.Name, f.Enabled}
	return list(ctx, db, listUsers, countUsersWhere, args, p, scanUser)
}

// UpdateUser applies u. Disabling the user revokes their tokens and deletes their temporary
// credentials (auth.md §5.5), in the same transaction.
func (db *DB) UpdateUser(ctx context.Context, id string, uu kps.UserUpdate) (*kps.User, error) {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	u, err := findUser(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	uu.Apply(u)
	if uu.DefaultProjectID != nil {
		if err := checkDefaultProject(ctx, tx, u); err != nil {
			return nil, err
		}
	}
	_, err = tx.exec(ctx, updateUser, u.Name, u.Enabled, u.Description, nullString(u.DefaultProjectID), id)
	if tx.eng.isUniqueViolation(err) {
		return nil, errUserNameTaken(u.Name)
	}
	if err != nil {
		return nil, err
	}
	if !u.Enabled {
		if err := revokeUser(ctx, tx, id); err != nil {
			return nil, err
		}
	}
	return u, tx.Commit()
}

// DeleteUser removes the user with their role assignments, access keys and temporary
// credentials. Their tokens stay, revoked, so that they are reported as revoked until the
// expiry housekeeping deletes them.
func (db *DB) DeleteUser(ctx context.Context, id string) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := findUser(ctx, tx, id); err != nil {
		return err
	}
	if err := revokeUser(ctx, tx, id); err != nil {
		return err
	}
	if _, err := tx.exec(ctx, deleteUser, id); err != nil {
		return err
	}
	return tx.Commit()
}

// UpdatePasswordHash records a password change: the hash and its change time are set, the
// user's tokens revoked and their temporary credentials deleted (auth.md §5.5).
func (db *DB) UpdatePasswordHash(ctx context.Context, userID, hash string) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	ok, err := tx.execOne(ctx, updatePasswordHash, hash, millis(tx.now), userID)
	if err != nil {
		return err
	}
	if !ok {
		return errUserNotFound(userID)
	}
	if err := revokeUser(ctx, tx, userID); err != nil {
		return err
	}
	return tx.Commit()
}

// RehashPassword stores a stronger hash of the same password (auth.md §12.1) if the stored hash
// is still oldHash; the password did not change, so nothing is revoked and the change time
// stays. A missing user or a changed hash makes it a no-op.
func (db *DB) RehashPassword(ctx context.Context, userID, oldHash, newHash string) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.exec(ctx, updateRehashPassword, newHash, userID, oldHash); err != nil {
		return err
	}
	return tx.Commit()
}
