package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/pgtest"
)

// TestPostgresRequestReads: under WithRequestReads the first lockout check reads the identity
// version and the project's task version with it, and the request's later reads are answered
// from that one query — values equal to separate reads made at that moment, not moved by a
// later change (made here through another replica), while a new request sees the change.
func TestPostgresRequestReads(t *testing.T) {
	dsn := pgtest.Schema(t)
	clock := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	a, b := openPostgresTest(t, dsn, now), openPostgresTest(t, dsn, now)
	fixture(t, a, "s1", "s2")
	ctx := t.Context()
	pol := kps.LockPolicy{Threshold: 1, Window: time.Minute, Lock: time.Hour}
	if _, err := a.Lockouts().Fail(ctx, clock, pol, "ip:192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	submitReset(t, a, "00000000-0000-4000-8000-000000000001", "s1")

	iv0, _, err := b.IdentityVersion(ctx)
	tv0, err2 := b.TaskVersion(ctx, "p")
	if err != nil || err2 != nil {
		t.Fatal(err, err2)
	}
	req := b.WithRequestReads(ctx, "p")
	wait, err := b.Lockouts().LockedFor(req, clock, "ip:192.0.2.1")
	if err != nil || wait != time.Hour {
		t.Fatalf("locked for %v (%v), want 1h", wait, err)
	}
	// Changes through replica A after the request's reads.
	submitReset(t, a, "00000000-0000-4000-8000-000000000002", "s2")
	if _, err := a.CreateDomain(ctx, &kps.Domain{Name: "d2", Enabled: true}, "r"); err != nil {
		t.Fatal(err)
	}
	iv, ok, err := b.IdentityVersion(req)
	if err != nil || !ok || iv != iv0 {
		t.Fatalf("identity version in the request %d, %v, %v; read before it %d", iv, ok, err, iv0)
	}
	if tv, err := b.TaskVersion(req, "p"); err != nil || tv != tv0 {
		t.Fatalf("task version in the request %d (%v); read before it %d", tv, err, tv0)
	}
	// Another project's version, another lockout key: read on their own.
	if tv, err := b.TaskVersion(req, "q"); err != nil || tv != 0 {
		t.Fatalf("task version of q %d (%v)", tv, err)
	}
	if wait, err := b.Lockouts().LockedFor(req, clock, "ip:192.0.2.2"); err != nil || wait != 0 {
		t.Fatalf("other key locked for %v (%v)", wait, err)
	}
	// Only the request's first check comes from its query: a failure counted meanwhile (by
	// the request itself, say) shows on a second check of the same key.
	req2 := b.WithRequestReads(ctx, "p")
	if wait, err := b.Lockouts().LockedFor(req2, clock, "ip:192.0.2.3"); err != nil || wait != 0 {
		t.Fatalf("before the failure: %v (%v)", wait, err)
	}
	if _, err := a.Lockouts().Fail(ctx, clock, pol, "ip:192.0.2.3"); err != nil {
		t.Fatal(err)
	}
	if wait, err := b.Lockouts().LockedFor(req2, clock, "ip:192.0.2.3"); err != nil || wait != time.Hour {
		t.Fatalf("second check after the failure: %v (%v), want 1h", wait, err)
	}
	// The next request sees the changes.
	next := b.WithRequestReads(ctx, "p")
	if iv, _, err := b.IdentityVersion(next); err != nil || iv <= iv0 {
		t.Fatalf("next request's identity version %d (%v), the previous %d", iv, err, iv0)
	}
	if tv, err := b.TaskVersion(next, "p"); err != nil || tv <= tv0 {
		t.Fatalf("next request's task version %d (%v), the previous %d", tv, err, tv0)
	}
	if wait, err := b.Lockouts().LockedFor(next, clock.Add(2*time.Hour), "ip:192.0.2.1"); err != nil || wait != 0 {
		t.Fatalf("after the lock: %v (%v)", wait, err)
	}
}

// TestSQLiteLockoutReadsRemembered: on SQLite a lockout read is remembered until the next
// write, and a failure counted (a write) shows on the next check.
func TestSQLiteLockoutReadsRemembered(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "kps.db"), nil)
	ctx := context.Background()
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	pol := kps.LockPolicy{Threshold: 2, Window: time.Minute, Lock: time.Hour}
	l := db.Lockouts()
	for i := range 3 {
		if wait, err := l.LockedFor(ctx, now, "ip:a"); err != nil || wait != 0 {
			t.Fatalf("check %d: %v (%v)", i, wait, err)
		}
	}
	if n := len(l.(*lockouts).cache.m); n != 1 {
		t.Fatalf("%d reads remembered, want 1", n)
	}
	for range 2 {
		if _, err := l.Fail(ctx, now, pol, "ip:a"); err != nil {
			t.Fatal(err)
		}
	}
	if wait, err := l.LockedFor(ctx, now, "ip:a"); err != nil || wait != time.Hour {
		t.Fatalf("after two failures: %v (%v), want 1h", wait, err)
	}
	// The lock ends by the clock alone.
	if wait, err := l.LockedFor(ctx, now.Add(59*time.Minute), "ip:a"); err != nil || wait != time.Minute {
		t.Fatalf("59 minutes later: %v (%v), want 1m", wait, err)
	}
	if wait, err := l.LockedFor(ctx, now.Add(time.Hour), "ip:a"); err != nil || wait != 0 {
		t.Fatalf("an hour later: %v (%v)", wait, err)
	}
	if err := l.Reset(ctx, now.Add(time.Hour), "ip:a"); err != nil {
		t.Fatal(err)
	}
	if wait, err := l.LockedFor(ctx, now, "ip:a"); err != nil || wait != 0 {
		t.Fatalf("after the reset, at the old time: %v (%v)", wait, err)
	}
}

// TestSQLiteIdleSweepWritesNothing: a sweep or purge that finds nothing commits nothing, so
// the identity version (SQLite: the write count) stays and remembered validations stay good;
// one that fails a task moves it.
func TestSQLiteIdleSweepWritesNothing(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	db := openTest(t, filepath.Join(t.TempDir(), "kps.db"), func() time.Time { return now })
	ctx := t.Context()
	fixture(t, db, "s1")
	submitReset(t, db, "00000000-0000-4000-8000-000000000001", "s1")
	if _, err := db.ClaimTask(ctx, "w", time.Minute); err != nil {
		t.Fatal(err)
	}
	v0, ok, err := db.IdentityVersion(ctx)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if n, err := db.FailExpiredTasks(ctx, false); err != nil || n != 0 {
		t.Fatalf("swept %d (%v)", n, err)
	}
	if n, err := db.PurgeSucceededTasks(ctx, time.Hour); err != nil || n != 0 {
		t.Fatalf("purged %d (%v)", n, err)
	}
	if v, _, _ := db.IdentityVersion(ctx); v != v0 {
		t.Fatalf("an idle sweep and purge moved the version from %d to %d", v0, v)
	}
	now = now.Add(2 * time.Minute)
	if n, err := db.FailExpiredTasks(ctx, false); err != nil || n != 1 {
		t.Fatalf("swept %d (%v), want the expired task", n, err)
	}
	if v, _, _ := db.IdentityVersion(ctx); v == v0 {
		t.Fatal("a sweep that failed a task left the version")
	}
}
