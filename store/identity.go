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
// on the caller (a bad login, a foreign project, …).

const (
	countDomains       = `SELECT COUNT(*) FROM domains`
	insertRole         = `INSERT INTO roles (id, name) VALUES (?, ?)`
	selectRoleIDByName = `SELECT id FROM roles WHERE name = ?`
	insertDomain       = `INSERT INTO domains (id, name, enabled, created) VALUES (?, ?, ?, ?)`
	insertProject      = `INSERT INTO projects (id, name, domain_id, enabled, created) VALUES (?, ?, ?, ?, ?)`
	insertUser         = `INSERT INTO users (id, name, domain_id, enabled, password_hash, password_changed,
    default_project_id, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
	insertDomainAssignment = `INSERT INTO role_assignments (user_id, role_id, domain_id) VALUES (?, ?, ?)`

	domainColumns  = `id, name, enabled`
	selectDomainBy = `SELECT ` + domainColumns + ` FROM domains WHERE `

	projectColumns  = `id, name, domain_id, enabled`
	selectProjectBy = `SELECT ` + projectColumns + ` FROM projects WHERE `

	userColumns  = `id, name, domain_id, enabled, password_hash, COALESCE(default_project_id, '')`
	selectUserBy = `SELECT ` + userColumns + ` FROM users WHERE `

	// Roles on the project and on the project's domain (auth.md §3.4).
	selectAssignedRoles = `
SELECT r.name FROM role_assignments a JOIN roles r ON r.id = a.role_id
WHERE a.user_id = ?
  AND (a.project_id = ? OR a.domain_id = (SELECT domain_id FROM projects WHERE id = ?))`

	insertToken = `INSERT INTO tokens (hash, user_id, project_id, domain_id, methods, audit_ids,
    issued_at, expires_at, revoked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	selectTokenByHash = `SELECT hash, user_id, project_id, domain_id, methods, audit_ids, issued_at,
    expires_at, revoked FROM tokens WHERE hash = ?`
)

// Bootstrap creates the roles, the operator domain with its default project and the admin user
// holding a domain-level admin assignment, unless any domain exists (auth.md §3.7).
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
	var n int
	if err := tx.queryRow(ctx, countDomains).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	now := millis(tx.now)
	roleIDs := map[kps.Role]string{}
	for _, r := range kps.Roles {
		// The roles may survive from an earlier store whose domains were all removed.
		var id string
		err := tx.queryRow(ctx, selectRoleIDByName, string(r)).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			id = newID()
			_, err = tx.exec(ctx, insertRole, id, string(r))
		}
		if err != nil {
			return false, fmt.Errorf("role %s: %w", r, err)
		}
		roleIDs[r] = id
	}
	domainID, projectID, userID := newID(), newID(), newID()
	if _, err := tx.exec(ctx, insertDomain, domainID, b.DomainName, true, now); err != nil {
		return false, fmt.Errorf("domain: %w", err)
	}
	if _, err := tx.exec(ctx, insertProject, projectID, b.ProjectName, domainID, true, now); err != nil {
		return false, fmt.Errorf("project: %w", err)
	}
	if _, err := tx.exec(ctx, insertUser, userID, b.AdminName, domainID, true, b.AdminPasswordHash, now,
		projectID, now); err != nil {
		return false, fmt.Errorf("user: %w", err)
	}
	if _, err := tx.exec(ctx, insertDomainAssignment, userID, roleIDs[kps.RoleAdmin], domainID); err != nil {
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

// DomainByID returns the domain, or nil when there is none.
func (db *DB) DomainByID(ctx context.Context, id string) (*kps.Domain, error) {
	return db.domainWhere(ctx, `id = ?`, id)
}

// DomainByName returns the domain, or nil when there is none.
func (db *DB) DomainByName(ctx context.Context, name string) (*kps.Domain, error) {
	return db.domainWhere(ctx, `name = ?`, name)
}

func (db *DB) domainWhere(ctx context.Context, where string, args ...any) (*kps.Domain, error) {
	var d kps.Domain
	err := db.read.QueryRowContext(ctx, db.bind(selectDomainBy+where), args...).Scan(&d.ID, &d.Name, &d.Enabled)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// ProjectByID returns the project, or nil when there is none.
func (db *DB) ProjectByID(ctx context.Context, id string) (*kps.Project, error) {
	return db.projectWhere(ctx, `id = ?`, id)
}

// ProjectByName returns the project of the domain, or nil when there is none.
func (db *DB) ProjectByName(ctx context.Context, domainID, name string) (*kps.Project, error) {
	return db.projectWhere(ctx, `domain_id = ? AND name = ?`, domainID, name)
}

func (db *DB) projectWhere(ctx context.Context, where string, args ...any) (*kps.Project, error) {
	var p kps.Project
	err := db.read.QueryRowContext(ctx, db.bind(selectProjectBy+where), args...).Scan(&p.ID, &p.Name, &p.DomainID, &p.Enabled)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// UserByID returns the user, or nil when there is none.
func (db *DB) UserByID(ctx context.Context, id string) (*kps.User, error) {
	return db.userWhere(ctx, `id = ?`, id)
}

// UserByName returns the user of the domain, or nil when there is none.
func (db *DB) UserByName(ctx context.Context, domainID, name string) (*kps.User, error) {
	return db.userWhere(ctx, `domain_id = ? AND name = ?`, domainID, name)
}

func (db *DB) userWhere(ctx context.Context, where string, args ...any) (*kps.User, error) {
	var u kps.User
	err := db.read.QueryRowContext(ctx, db.bind(selectUserBy+where), args...).Scan(&u.ID, &u.Name, &u.DomainID,
		&u.Enabled, &u.PasswordHash, &u.DefaultProjectID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// EffectiveRoles returns the implied closure of the roles the user holds on the project and on
// the project's domain, strongest first; empty when none.
func (db *DB) EffectiveRoles(ctx context.Context, userID, projectID string) ([]kps.Role, error) {
	rows, err := db.read.QueryContext(ctx, db.bind(selectAssignedRoles), userID, projectID, projectID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var roles []kps.Role
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			return nil, err
		}
		roles = append(roles, kps.Role(r))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return kps.Implied(roles), nil
}

// CreateToken stores the token record (by its hash).
func (db *DB) CreateToken(ctx context.Context, t *kps.Token) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.exec(ctx, insertToken, t.Hash, t.UserID, t.ProjectID, t.DomainID, encodeList(t.Methods),
		encodeList(t.AuditIDs), millis(t.IssuedAt), millis(t.ExpiresAt), t.Revoked); err != nil {
		return err
	}
	return tx.Commit()
}

// TokenByHash returns the token record, expired or revoked ones included (the caller judges),
// or nil when there is none.
func (db *DB) TokenByHash(ctx context.Context, hash string) (*kps.Token, error) {
	var (
		t                 kps.Token
		methods, audits   string
		issued, expiresAt int64
	)
	err := db.read.QueryRowContext(ctx, db.bind(selectTokenByHash), hash).Scan(&t.Hash, &t.UserID, &t.ProjectID,
		&t.DomainID, &methods, &audits, &issued, &expiresAt, &t.Revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if t.Methods, err = decodeList(methods); err != nil {
		return nil, err
	}
	if t.AuditIDs, err = decodeList(audits); err != nil {
		return nil, err
	}
	t.IssuedAt, t.ExpiresAt = fromMillis(issued), fromMillis(expiresAt)
	return &t, nil
}
