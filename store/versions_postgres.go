package store

import (
	"context"
	"fmt"
	"slices"

	"github.com/openkps/kps"
)

// postgresVersions keeps the versions in the database, where every replica bumps and reads
// them: task_versions rows bumped in the changing transaction (migration 0004), identity_version
// bumped by triggers (migration 0007).
type postgresVersions struct {
	// requestReads shares the per-request read of concurrent requests (readgroup.go).
	requestReads readGroup
}

var _ versionKeeper = (*postgresVersions)(nil)

const (
	bumpTaskVersion = `INSERT INTO task_versions (project_id, version) VALUES (?, 1)
ON CONFLICT (project_id) DO UPDATE SET version = task_versions.version + 1`
	selectTaskVersion     = `SELECT version FROM task_versions WHERE project_id = ?`
	selectIdentityVersion = `SELECT version FROM identity_version WHERE id = 1`
	// selectRequestReads is what an authenticated request reads before its handler: the
	// identity version, the task version of its project and the lockout of its client, in one
	// round trip. %s are the lockout keys' placeholders; with no keys the IN list is NULL.
	selectRequestReads = `SELECT (SELECT version FROM identity_version WHERE id = 1),
    COALESCE((SELECT version FROM task_versions WHERE project_id = ?), 0),
    COALESCE((SELECT MAX(locked_until) FROM lockouts WHERE lock_key IN (%s)), 0)`
)

// taskChanged bumps the projects' rows now, in sorted order, so that two transactions bumping
// several projects (two replicas' sweepers) cannot deadlock.
func (v *postgresVersions) taskChanged(ctx context.Context, tx *txn, projects []string) error {
	projects = slices.Clone(projects)
	slices.Sort(projects)
	for _, p := range slices.Compact(projects) {
		if _, err := tx.exec(ctx, bumpTaskVersion, p); err != nil {
			return err
		}
	}
	return nil
}

func (v *postgresVersions) committed(*txn) {}

func (v *postgresVersions) taskVersion(ctx context.Context, db *DB, projectID string) (int64, error) {
	return queryTaskVersion(db.read.QueryRowContext(ctx, db.bind(selectTaskVersion), projectID))
}

func (v *postgresVersions) pageVersionBefore(string) (int64, bool) { return 0, false }

// pageVersionInSnapshot is the page's first statement, which takes the snapshot: the version
// is the one of exactly this page.
func (v *postgresVersions) pageVersionInSnapshot(ctx context.Context, tx *txn, projectID string) (int64, error) {
	return queryTaskVersion(tx.queryRow(ctx, selectTaskVersion, projectID))
}

func (v *postgresVersions) identityVersion(ctx context.Context, db *DB) (int64, bool, error) {
	var n int64
	if err := db.read.QueryRowContext(ctx, selectIdentityVersion).Scan(&n); err != nil {
		return 0, false, fmt.Errorf("identity version: %w", err)
	}
	return n, true, nil
}

// writeVersion: replicas write too, so this process's count says nothing.
func (v *postgresVersions) writeVersion() (int64, bool) { return 0, false }

// readRequest makes the three reads in one query; concurrent requests with the same arguments
// share it, each one a query that started after it asked (readGroup).
func (v *postgresVersions) readRequest(ctx context.Context, db *DB, projectID, clientLockKey string) (*kps.RequestReads, error) {
	args := []any{projectID}
	in := "NULL"
	if clientLockKey != "" {
		in = "?"
		args = append(args, clientLockKey)
	}
	q := db.bind(fmt.Sprintf(selectRequestReads, in))
	vals, err := v.requestReads.do(ctx, func(ctx context.Context) (r [3]int64, err error) {
		err = db.read.QueryRowContext(ctx, q, args...).Scan(&r[0], &r[1], &r[2])
		return r, err
	}, projectID, clientLockKey)
	if err != nil {
		return nil, fmt.Errorf("identity and task versions: %w", err)
	}
	return &kps.RequestReads{IdentityVersion: vals[0], IdentityVersioned: true, TaskVersion: vals[1],
		ClientLockKey: clientLockKey, ClientLockedUntil: fromMillis(vals[2])}, nil
}
