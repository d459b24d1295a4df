package store

import (
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/openkps/kps"
	"github.com/openkps/kps/service"
)

// BenchmarkRotationSteps measures what a rotation costs the store without the hosts: a whole
// rotation of N servers at batch 32, driven as kps serve drives it — claim each task, end it,
// and step the rotation — with the step in the transaction of the task's outcome
// (FinishRotationTask, "together") or in a transaction of its own after it (FinishTask, then
// AdvanceRotation: the driver's step, "after"). One iteration is one rotation.
func BenchmarkRotationSteps(b *testing.B) {
	for _, n := range []int{200, 1000} {
		for _, together := range []bool{true, false} {
			name := fmt.Sprintf("servers-%d/after", n)
			if together {
				name = fmt.Sprintf("servers-%d/together", n)
			}
			b.Run(name, func(b *testing.B) { benchmarkRotation(b, n, together) })
		}
	}
}

func benchmarkRotation(b *testing.B, n int, together bool) {
	ctx := b.Context()
	db, err := OpenSQLite(ctx, filepath.Join(b.TempDir(), "kps.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const project, user = "p", "u"
	k := &kps.KeyPair{ProjectID: project, Name: "new", Type: kps.TypeSSH, Scope: kps.ScopeUser, UserID: user,
		PublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAInew new", Fingerprint: "fp:new", Algorithm: "ED25519"}
	if err := db.CreateKeyPair(ctx, k, kps.KeyPairQuota{}); err != nil {
		b.Fatal(err)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("s%04d", i)
		if err := db.CreateServer(ctx, &kps.Server{ProjectID: project, ID: ids[i], Name: ids[i], Address: "192.0.2.10", Port: 22,
			User: "root", SSHDConfig: kps.DefaultSSHDConfig, ReachByAdmin: true, Credential: []byte("sealed")}, 0); err != nil {
			b.Fatal(err)
		}
	}
	submit := func(r *kps.Rotation, serverID string) kps.TaskSubmission {
		return kps.TaskSubmission{ID: uuid.NewString(), ProjectID: r.ProjectID, UserID: r.UserID, Operation: kps.OpReset,
			KeyPairName: r.KeyPairName, ServerID: serverID, MayExport: true}
	}
	cpu0 := cpuTime()
	for b.Loop() {
		r := &kps.Rotation{ID: uuid.NewString(), ProjectID: project, UserID: user, KeyPairName: "new", BatchSize: 32,
			MaxFailures: n, MayExport: true, PrivateKey: []byte("sealed")}
		if err := db.CreateRotation(ctx, r, ids); err != nil {
			b.Fatal(err)
		}
		ref := kps.RotationRef{ProjectID: project, ID: r.ID}
		if _, err := db.AdvanceRotation(ctx, ref, submit, service.AdmitTask); err != nil {
			b.Fatal(err)
		}
		for done := 0; done < n; done++ {
			t, err := db.ClaimTask(ctx, "w", time.Minute)
			if err != nil || t == nil {
				b.Fatalf("claim %d: %v %v", done, t, err)
			}
			o := kps.TaskOutcome{Success: true, PublicKey: t.PublicKey}
			if together {
				_, err = db.FinishRotationTask(ctx, t, o, submit, service.AdmitTask)
			} else if err = db.FinishTask(ctx, t, o); err == nil {
				_, err = db.AdvanceRotation(ctx, ref, submit, service.AdmitTask)
			}
			if err != nil {
				b.Fatal(err)
			}
			// A poll of the rotation's progress, as clients make (the bench polls every 20 ms).
			if done%8 == 0 {
				if _, _, err := db.ListRotations(ctx, project, kps.Page{Limit: 1}); err != nil {
					b.Fatal(err)
				}
			}
		}
		if got, err := db.Rotation(ctx, project, r.ID); err != nil || got.State != kps.RotationCompleted {
			b.Fatalf("rotation ended %v: %v", got.State, err)
		}
	}
	// The process's CPU time per rotation: on a shared machine the wall time is mostly fsyncs
	// queued behind other processes' disk writes.
	b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
