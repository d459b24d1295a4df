package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/pgtest"
)

// TestPostgresRequestReads: ReadRequest reads the identity version, the project's task version
// and the client's lock in one query — values equal to separate reads made at that moment, not
// moved by a later change (made here through another replica), while the next request's reads
// see the change. The reads answer only for their own key: a later check of the lock (a failure
// counted meanwhile, by the request itself say) asks the lockouts again.
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
	req, err := b.ReadRequest(ctx, "p", "ip:192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if !req.IdentityVersioned || req.IdentityVersion != iv0 || req.TaskVersion != tv0 {
		t.Fatalf("request reads %+v; read apart: identity %d, tasks %d", req, iv0, tv0)
	}
	if wait, ok := req.ClientLockedFor(clock, "ip:192.0.2.1"); !ok || wait != time.Hour {
		t.Fatalf("locked for %v (%v), want 1h", wait, ok)
	}
	if _, ok := req.ClientLockedFor(clock, "ip:192.0.2.2"); ok {
		t.Fatal("the reads answered for another key")
	}
	// Changes through replica A after the request's reads; another project's version.
	submitReset(t, a, "00000000-0000-4000-8000-000000000002", "s2")
	if _, err := a.CreateDomain(ctx, &kps.Domain{Name: "d2", Enabled: true}, "r"); err != nil {
		t.Fatal(err)
	}
	if q, err := b.ReadRequest(ctx, "q", ""); err != nil || q.TaskVersion != 0 || q.IdentityVersion <= iv0 || !q.ClientLockedUntil.IsZero() {
		t.Fatalf("reads of q without a lock key: %+v (%v)", q, err)
	}
	// A failure counted after the reads shows on the lockouts, not in the reads.
	before, err := b.ReadRequest(ctx, "p", "ip:192.0.2.3")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Lockouts().Fail(ctx, clock, pol, "ip:192.0.2.3"); err != nil {
		t.Fatal(err)
	}
	if wait, ok := before.ClientLockedFor(clock, "ip:192.0.2.3"); !ok || wait != 0 {
		t.Fatalf("reads before the failure: %v (%v)", wait, ok)
	}
	if wait, err := b.Lockouts().LockedFor(ctx, clock, "ip:192.0.2.3"); err != nil || wait != time.Hour {
		t.Fatalf("a check after the failure: %v (%v), want 1h", wait, err)
	}
	// The next request sees the changes.
	next, err := b.ReadRequest(ctx, "p", "ip:192.0.2.1")
	if err != nil || next.IdentityVersion <= iv0 || next.TaskVersion <= tv0 {
		t.Fatalf("next request's reads %+v (%v), the previous identity %d, tasks %d", next, err, iv0, tv0)
	}
	if wait, ok := next.ClientLockedFor(clock.Add(2*time.Hour), "ip:192.0.2.1"); !ok || wait != 0 {
		t.Fatalf("after the lock: %v (%v)", wait, ok)
	}
}

// TestSQLiteRequestReads: on SQLite the reads come from this process's counters and the
// remembered lockout reads, and follow every commit.
func TestSQLiteRequestReads(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	db := openTest(t, filepath.Join(t.TempDir(), "kps.db"), func() time.Time { return now })
	ctx := t.Context()
	fixture(t, db, "s1")
	r0, err := db.ReadRequest(ctx, "p", "ip:a")
	if err != nil || !r0.IdentityVersioned {
		t.Fatal(r0, err)
	}
	submitReset(t, db, "00000000-0000-4000-8000-000000000001", "s1")
	if _, err := db.Lockouts().Fail(ctx, now, kps.LockPolicy{Threshold: 1, Window: time.Minute, Lock: time.Hour}, "ip:a"); err != nil {
		t.Fatal(err)
	}
	r1, err := db.ReadRequest(ctx, "p", "ip:a")
	if err != nil {
		t.Fatal(err)
	}
	iv, _, _ := db.IdentityVersion(ctx)
	tv, _ := db.TaskVersion(ctx, "p")
	if r1.IdentityVersion <= r0.IdentityVersion || r1.IdentityVersion != iv || r1.TaskVersion <= r0.TaskVersion || r1.TaskVersion != tv {
		t.Fatalf("reads %+v then %+v; now identity %d, tasks %d", r0, r1, iv, tv)
	}
	if wait, ok := r1.ClientLockedFor(now, "ip:a"); !ok || wait != time.Hour {
		t.Fatalf("locked for %v (%v), want 1h", wait, ok)
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
