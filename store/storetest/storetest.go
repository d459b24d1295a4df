// Package storetest is the conformance suite every kps.Store engine must pass (SQLite and
// PostgreSQL): one behaviour, checked the same way against each engine. The submissions it
// makes are decided by the service's admission (service.AdmitTask), as in production. It
// imports the domain package, service and internal test helpers.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/service"
)

// Opener returns a fresh, empty store that reads time from now. It registers its own cleanup
// (closing the store, removing files) with t.
type Opener func(t *testing.T, now func() time.Time) kps.Store

// Run runs the whole suite against the engine that open creates. Subtests run in parallel, each
// on its own store.
func Run(t *testing.T, open Opener) {
	groups := []struct {
		name  string
		tests map[string]func(*testing.T, *env)
	}{
		{"Identity", identityTests},
		{"IdentityModel", identityModelTests},
		{"Servers", serverTests},
		{"KeyPairs", keyPairTests},
		{"Tasks", taskTests},
		{"TaskWrites", taskWriteTests},
		{"Fairness", fairnessTests},
		{"TaskVersions", taskVersionTests},
		{"IdentityVersions", identityVersionTests},
		{"Hosting", hostingTests},
		{"Replicas", replicaTests},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, name := range sortedKeys(g.tests) {
				test := g.tests[name]
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					test(t, setup(t, open))
				})
			}
		})
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Clock is a settable clock for stores under test. It does not move by itself, so everything a
// test does without advancing it happens in the same millisecond.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock standing at start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock by d (which may be negative).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Epoch is where every test clock starts: a round millisecond value, like stored times.
var Epoch = time.Date(2026, 6, 1, 12, 0, 0, 123_000_000, time.UTC)

// env is one subtest's fresh store and fixtures.
type env struct {
	t     *testing.T
	ctx   context.Context
	s     kps.Store
	clock *Clock
}

const (
	project      = "0b7e4c2a91d34f5e8c6a2d1f3e5b7a90"
	otherProject = "9f1e2d3c4b5a69788796a5b4c3d2e1f0"
	alice        = "a11ce000000000000000000000000001"
	bob          = "b0b00000000000000000000000000002"
	worker       = "worker-1"
	lease        = 30 * time.Second
)

func setup(t *testing.T, open Opener) *env {
	clock := NewClock(Epoch)
	return &env{t: t, ctx: t.Context(), s: open(t, clock.Now), clock: clock}
}

// wantCode fails unless err is a *kps.Error with the code.
func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var e *kps.Error
	if !errors.As(err, &e) {
		t.Fatalf("got error %v, want a *kps.Error %s", err, code)
	}
	if e.Code != code {
		t.Fatalf("got %s (%s), want %s", e.Code, e.Message, code)
	}
	if e.Message == "" {
		t.Fatalf("%s without a message", e.Code)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newTaskID returns a lowercase UUID v4 (§1.6).
func newTaskID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// server registers a server as a project admin would (its reach is the admin's: see
// testSubmitLoginWhereAdminSent for the other kind); credential controls whether it has a
// service credential.
func (e *env) server(projectID, id string, credential bool) *kps.Server {
	e.t.Helper()
	s := &kps.Server{ProjectID: projectID, ID: id, Name: id + " (name)", Address: "192.0.2.10", Port: 22,
		User: "root", SSHDConfig: kps.DefaultSSHDConfig, ReachByAdmin: true}
	if credential {
		s.Credential = []byte("sealed:" + id)
	}
	must(e.t, e.s.CreateServer(e.ctx, s, 0))
	return s
}

// keyPair creates an ssh key pair of the user with the scope.
func (e *env) keyPair(projectID, name, scope, userID string) *kps.KeyPair {
	e.t.Helper()
	k := &kps.KeyPair{ProjectID: projectID, Name: name, Type: kps.TypeSSH, Scope: scope, UserID: userID,
		PublicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + name + " " + name, Fingerprint: "fp:" + name,
		Algorithm: "ED25519"}
	must(e.t, e.s.CreateKeyPair(e.ctx, k, kps.KeyPairQuota{}))
	return k
}

// submit submits a task and fails the test on error.
func (e *env) submit(s kps.TaskSubmission) *kps.Task {
	e.t.Helper()
	if s.ID == "" {
		s.ID = newTaskID()
	}
	t, err := e.s.SubmitTask(e.ctx, s, service.AdmitTask)
	must(e.t, err)
	return t
}

// resetOf, replaceOf and unbindOf are alice's submissions; she holds the member role, which
// may export private keys (MayExport).
func resetOf(projectID, keyPair, serverID string) kps.TaskSubmission {
	return kps.TaskSubmission{ID: newTaskID(), ProjectID: projectID, UserID: alice, Operation: kps.OpReset,
		KeyPairName: keyPair, ServerID: serverID, MayExport: true}
}

func replaceOf(projectID, keyPair, serverID string) kps.TaskSubmission {
	return kps.TaskSubmission{ID: newTaskID(), ProjectID: projectID, UserID: alice, Operation: kps.OpReplace,
		KeyPairName: keyPair, ServerID: serverID, CallerAuth: true, MayExport: true}
}

func unbindOf(projectID, serverID string, callerAuth bool) kps.TaskSubmission {
	return kps.TaskSubmission{ID: newTaskID(), ProjectID: projectID, UserID: alice, Operation: kps.OpUnbind,
		ServerID: serverID, CallerAuth: callerAuth, MayExport: true}
}

// claim claims the next task and fails unless it is id.
func (e *env) claim(id string) *kps.Task {
	e.t.Helper()
	t, err := e.s.ClaimTask(e.ctx, worker, lease)
	must(e.t, err)
	if t == nil {
		e.t.Fatalf("claim: no task, want %s", id)
	}
	if t.ID != id {
		e.t.Fatalf("claimed %s, want %s", t.ID, id)
	}
	return t
}

// run submits s, claims it and finishes it with o.
func (e *env) run(s kps.TaskSubmission, o kps.TaskOutcome) *kps.Task {
	e.t.Helper()
	t := e.claim(e.submit(s).ID)
	must(e.t, e.s.FinishTask(e.ctx, t, o))
	return t
}

// runMarked submits s, claims it, records that its host job reached the write steps and
// finishes it with o.
func (e *env) runMarked(s kps.TaskSubmission, o kps.TaskOutcome, steps ...kps.HostWrite) *kps.Task {
	e.t.Helper()
	t := e.claim(e.submit(s).ID)
	for _, step := range steps {
		must(e.t, e.s.MarkTaskWrite(e.ctx, t, step))
	}
	must(e.t, e.s.FinishTask(e.ctx, t, o))
	return t
}

// bind binds the key pair to the server through a successful REPLACE.
func (e *env) bind(projectID, keyPair, serverID string, passwordDisabled bool) {
	e.t.Helper()
	k, err := e.s.KeyPair(e.ctx, projectID, keyPair, alice)
	must(e.t, err)
	e.run(replaceOf(projectID, keyPair, serverID), kps.TaskOutcome{Success: true, PublicKey: k.PublicKey,
		PasswordDisabled: passwordDisabled})
}

func (e *env) task(projectID, id string) *kps.Task {
	e.t.Helper()
	t, err := e.s.Task(e.ctx, projectID, id)
	must(e.t, err)
	return t
}

func (e *env) wantPhase(projectID, id string, phase kps.Phase) *kps.Task {
	e.t.Helper()
	t := e.task(projectID, id)
	if t.Phase != phase {
		e.t.Fatalf("task %s is %s, want %s", id, t.Phase, phase)
	}
	return t
}

func (e *env) binding(projectID, serverID string) *kps.Binding {
	e.t.Helper()
	b, err := e.s.Binding(e.ctx, projectID, serverID)
	must(e.t, err)
	return b
}

func ptr[T any](v T) *T { return &v }

func fmtPtr(p *string) string {
	if p == nil {
		return "<absent>"
	}
	return fmt.Sprintf("%q", *p)
}

// fmtAny prints v, with a typed nil pointer as <nil>.
func fmtAny(v any) string {
	if v == nil {
		return "<nil>"
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return "<nil>"
	}
	return fmt.Sprintf("%+v", v)
}
