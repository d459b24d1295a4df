package store

import (
	"context"
	"database/sql"
	"errors"

	"github.com/openkps/kps"
)

const (
	// Roles on the project and on the project's domain (auth.md §3.4).
	selectEffectiveRoles = `
SELECT r.name FROM role_assignments a JOIN roles r ON r.id = a.role_id
WHERE a.user_id = ?
  AND (a.project_id = ? OR a.domain_id = (SELECT domain_id FROM projects WHERE id = ?))`
	selectDomainRoles = `
SELECT r.name FROM role_assignments a JOIN roles r ON r.id = a.role_id
WHERE a.user_id = ? AND a.domain_id = ?`

	selectAssignment = `SELECT 1 FROM role_assignments
WHERE user_id = ? AND role_id = ? AND project_id IS NOT DISTINCT FROM ? AND domain_id IS NOT DISTINCT FROM ?`
	insertAssignment = `INSERT INTO role_assignments (user_id, role_id, project_id, domain_id) VALUES (?, ?, ?, ?)`
	deleteAssignment = `DELETE FROM role_assignments
WHERE user_id = ? AND role_id = ? AND project_id IS NOT DISTINCT FROM ? AND domain_id IS NOT DISTINCT FROM ?`
	listAssignments = `
SELECT a.user_id, r.name, COALESCE(a.project_id, ''), COALESCE(a.domain_id, '')
FROM role_assignments a JOIN roles r ON r.id = a.role_id
WHERE a.user_id = COALESCE(?, a.user_id)
  AND COALESCE(a.project_id, '') = COALESCE(?, a.project_id, '')
  AND COALESCE(a.domain_id, '') = COALESCE(?, a.domain_id, '')
ORDER BY a.user_id, r.name, COALESCE(a.project_id, ''), COALESCE(a.domain_id, '')`
)

// RoleID returns the ID the role was given at install (auth.md §3.1), or "" for an unknown role.
func (db *DB) RoleID(ctx context.Context, r kps.Role) (string, error) {
	var id string
	err := db.read.QueryRowContext(ctx, db.bind(selectRoleIDByName), string(r)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return id, err
}

// EffectiveRoles returns the implied closure of the roles the user holds on the project and on
// the project's domain, strongest first; empty when none.
func (db *DB) EffectiveRoles(ctx context.Context, userID, projectID string) ([]kps.Role, error) {
	return db.roles(ctx, selectEffectiveRoles, userID, projectID, projectID)
}

// DomainRoles returns the implied closure of the roles assigned to the user on the domain
// itself, strongest first; empty when none.
func (db *DB) DomainRoles(ctx context.Context, userID, domainID string) ([]kps.Role, error) {
	return db.roles(ctx, selectDomainRoles, userID, domainID)
}

func (db *DB) roles(ctx context.Context, query string, args ...any) ([]kps.Role, error) {
	rows, err := db.read.QueryContext(ctx, db.bind(query), args...)
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

// GrantRole records the assignment; granting it again is not an error. A missing user, project
// or domain is KPS.6110, an unknown role KPS.6003, and a target outside the user's domain
// KPS.6003: users never act across domains (auth.md §2).
func (db *DB) GrantRole(ctx context.Context, a kps.RoleAssignment) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	args, err := assignmentArgs(ctx, tx, a)
	if err != nil {
		return err
	}
	exists, err := tx.exists(ctx, selectAssignment, args...)
	if err != nil || exists {
		return err
	}
	if _, err := tx.exec(ctx, insertAssignment, args...); err != nil {
		return err
	}
	return tx.Commit()
}

// RevokeRole removes the assignment, or fails with KPS.6110 when there is none. Tokens stay
// valid: roles are evaluated live (auth.md §3.4, §5.5).
func (db *DB) RevokeRole(ctx context.Context, a kps.RoleAssignment) error {
	tx, err := db.beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var roleID string
	err = tx.queryRow(ctx, selectRoleIDByName, string(a.Role)).Scan(&roleID)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	ok, err := tx.execOne(ctx, deleteAssignment, a.UserID, roleID, nullString(a.ProjectID), nullString(a.DomainID))
	if err != nil {
		return err
	}
	if !ok {
		return kps.Errorf(kps.ErrIdentityNotFound, "The role assignment could not be found.")
	}
	return tx.Commit()
}

// assignmentArgs checks the members of a and returns (user_id, role_id, project_id, domain_id)
// for the statements.
func assignmentArgs(ctx context.Context, tx *txn, a kps.RoleAssignment) ([]any, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	var roleID string
	err := tx.queryRow(ctx, selectRoleIDByName, string(a.Role)).Scan(&roleID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, kps.InvalidParameter("role")
	}
	if err != nil {
		return nil, err
	}
	u, err := findUser(ctx, tx, a.UserID)
	if err != nil {
		return nil, err
	}
	domainID := a.DomainID
	if a.ProjectID != "" {
		p, err := findProject(ctx, tx, a.ProjectID)
		if err != nil {
			return nil, err
		}
		domainID = p.DomainID
	} else if _, err := findDomain(ctx, tx, a.DomainID); err != nil {
		return nil, err
	}
	if domainID != u.DomainID {
		return nil, kps.InvalidParameter("user_id")
	}
	return []any{a.UserID, roleID, nullString(a.ProjectID), nullString(a.DomainID)}, nil
}

// ListRoleAssignments returns the matching assignments ordered by user, role and target. A
// project filter matches the assignments made on that project only, not those of its domain.
func (db *DB) ListRoleAssignments(ctx context.Context, f kps.RoleAssignmentFilter) ([]kps.RoleAssignment, error) {
	rows, err := db.read.QueryContext(ctx, db.bind(listAssignments), f.UserID, f.ProjectID, f.DomainID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []kps.RoleAssignment{}
	for rows.Next() {
		var a kps.RoleAssignment
		var role string
		if err := rows.Scan(&a.UserID, &role, &a.ProjectID, &a.DomainID); err != nil {
			return nil, err
		}
		a.Role = kps.Role(role)
		out = append(out, a)
	}
	return out, rows.Err()
}
