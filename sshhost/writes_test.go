package sshhost

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/hostilessh"
	"github.com/openkps/kps/internal/sshdtest"
)

// writeRecorder is a HostJob.BeforeWrite that records each step with what the host held at
// that moment, so a test can show that the mark comes before the change.
type writeRecorder struct {
	mu     sync.Mutex
	steps  []kps.HostWrite
	before []string // authorized_keys (or the drop-in, for WriteConfig) when the step was announced
	refuse error
}

func (w *writeRecorder) hook(t *testing.T, h *sshdtest.Host) func(context.Context, kps.HostWrite) error {
	return func(_ context.Context, step kps.HostWrite) error {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.steps = append(w.steps, step)
		var held string
		switch step {
		case kps.WriteKey:
			held, _ = h.AuthorizedKeys(t)
		case kps.WriteConfig:
			b, err := os.ReadFile(filepath.Join(h.DropInDir, dropInName))
			if err == nil {
				held = string(b)
			}
		}
		w.before = append(w.before, held)
		return w.refuse
	}
}

func (w *writeRecorder) got() []kps.HostWrite {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]kps.HostWrite(nil), w.steps...)
}

func wantSteps(t *testing.T, w *writeRecorder, want ...kps.HostWrite) {
	t.Helper()
	got := w.got()
	if len(got) != len(want) {
		t.Fatalf("write steps announced %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("write steps announced %v, want %v", got, want)
		}
	}
}

// TestWriteIsAnnouncedBeforeTheHostChanges: a bind that adds its key announces WriteKey while
// the host still holds the old file; a bind of a key the host already holds, an unbind, and a
// bind refused at login announce nothing; a refused announcement writes nothing.
func TestWriteIsAnnouncedBeforeTheHostChanges(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
	key, other, foreign := newKey(t, "k"), newKey(t, "other"), newKey(t, "break-glass")
	old := "# keep\n" + foreign.public + "\n"
	h.WriteAuthorizedKeys(t, old)

	w := &writeRecorder{}
	job.BeforeWrite = w.hook(t, h)
	job.InstallKey = key.public
	mustExecute(t, e, job)
	wantSteps(t, w, kps.WriteKey)
	if w.before[0] != old {
		t.Fatalf("when WriteKey was announced the host held %q, want the old content %q", w.before[0], old)
	}
	if got, _ := h.AuthorizedKeys(t); !strings.Contains(got, blob64(key.public)) {
		t.Fatalf("the key was not written: %q", got)
	}

	// A bind of the key someone else put there (and the removal of another key): the edit finds
	// the key, so the task does not write it, and announces nothing although the file changes.
	h.WriteAuthorizedKeys(t, old+other.public+"\n")
	w = &writeRecorder{}
	job.BeforeWrite = w.hook(t, h)
	job.InstallKey, job.RemoveKeys = foreign.public, []string{other.public}
	mustExecute(t, e, job)
	wantSteps(t, w)
	if got, _ := h.AuthorizedKeys(t); got != old {
		t.Fatalf("after binding a key the host held: %q, want %q", got, old)
	}

	// An unbind removes; it never adds.
	unbind := job
	unbind.Operation, unbind.InstallKey, unbind.RemoveKeys = kps.OpUnbind, "", []string{foreign.public}
	mustExecute(t, e, unbind)
	wantSteps(t, w)

	// A refused login announces nothing (the attack of docs/SECURITY.md §3.1).
	h.WriteAuthorizedKeys(t, old)
	bad := job
	bad.InstallKey, bad.RemoveKeys = key.public, nil
	bad.Login.Key = "not-the-password"
	_, err := execute(t, e, bad)
	wantCode(t, err, kps.TaskAuthFailed, h)
	wantSteps(t, w)

	// The owner refuses the announcement (its lease is lost): nothing is written, nothing is
	// left behind, and the job fails with the owner's error.
	w = &writeRecorder{refuse: kps.Errorf(kps.TaskInterrupted, "lease lost")}
	job.BeforeWrite = w.hook(t, h)
	job.InstallKey, job.RemoveKeys = key.public, nil
	_, err = execute(t, e, job)
	if kps.ErrorCode(err) != kps.TaskInterrupted {
		t.Fatalf("refused announcement: %v", err)
	}
	wantSteps(t, w, kps.WriteKey)
	if got, _ := h.AuthorizedKeys(t); got != old {
		t.Fatalf("a refused announcement wrote: %q", got)
	}
	eventually(t, "the staged file removed", func() bool {
		left, _ := filepath.Glob(filepath.Join(h.Home, ".ssh", ".authorized_keys.kps-*"))
		return len(left) == 0
	})
}

// TestConfigWriteIsAnnouncedFirst: a disabling bind announces WriteConfig before the drop-in
// exists; refused, the configuration stays as it was.
func TestConfigWriteIsAnnouncedFirst(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{Sudo: true})
	key := newKey(t, "k")
	job.Operation, job.InstallKey, job.DisablePassword = kps.OpReset, key.public, true
	refusing := &writeRecorder{}
	job.BeforeWrite = func(ctx context.Context, step kps.HostWrite) error {
		if step == kps.WriteConfig {
			refusing.refuse = errors.New("store down")
		}
		return refusing.hook(t, h)(ctx, step)
	}
	if _, err := execute(t, e, job); err == nil || !strings.Contains(err.Error(), "store down") {
		t.Fatalf("refused WriteConfig: %v", err)
	}
	wantSteps(t, refusing, kps.WriteKey, kps.WriteConfig)
	if _, err := os.Stat(filepath.Join(h.DropInDir, dropInName)); !os.IsNotExist(err) {
		t.Fatalf("the configuration changed after a refused announcement: %v", err)
	}
	if !h.PasswordLoginWorks(t) {
		t.Fatal("password login is off after a refused announcement")
	}

	// Accepted: announced while the drop-in did not exist yet. The key is in place by now, so
	// the bind does not announce WriteKey again.
	w := &writeRecorder{}
	job.BeforeWrite = w.hook(t, h)
	if res := mustExecute(t, e, job); !res.PasswordDisabled {
		t.Fatal("password login not disabled")
	}
	wantSteps(t, w, kps.WriteConfig)
	if w.before[0] != "" {
		t.Fatalf("WriteConfig announced after the drop-in was written: %q", w.before[0])
	}
}

// TestHostOutputIsBounded runs jobs against hosts that print without end: junk lines
// (hostilessh Flood) and an authorized_keys section that never ends (a hex flood). Each job
// fails with KPS.6610 at once, saying why, rather than reading until its deadline or holding
// what the host sent.
func TestHostOutputIsBounded(t *testing.T) {
	t.Parallel()
	hexLine := []byte(" 73 73 68 2d 65 64 32 35 35 31 39 20 41 41 41 41\n")
	hexFlood := []byte("begin authorized_keys\n")
	for len(hexFlood) < 24<<20 {
		hexFlood = append(hexFlood, hexLine...)
	}
	for _, c := range []struct {
		name string
		opt  hostilessh.Options
		want string
	}{
		{"junk", hostilessh.Options{Behavior: hostilessh.Flood}, "more output than a task needs"},
		{"hex", hostilessh.Options{Behavior: hostilessh.Fake, Output: hexFlood}, "more than 4 MiB for ~/.ssh/authorized_keys"},
		{"long line", hostilessh.Options{Behavior: hostilessh.Fake, Output: []byte(strings.Repeat("x", 1<<20))}, "a line longer than a task needs"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			host := hostilessh.Start(t, c.opt)
			job := kps.HostJob{TaskID: "flood", Operation: kps.OpReplace, Address: host.Address, Port: host.Port,
				User: "root", HostKeys: []string{host.HostKey}, InstallKey: newKey(t, "k").public,
				Login: kps.Credential{Type: kps.CredentialPassword, Key: "x"}}
			e := &Executor{}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			start := time.Now()
			_, err := e.Execute(ctx, job)
			if kps.ErrorCode(err) != kps.TaskRemoteFailed || !strings.Contains(kps.ErrorMessage(err), c.want) {
				t.Fatalf("err = %v, want KPS.6610 saying %q", err, c.want)
			}
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("the job took %s: it read until its deadline", d)
			}
			t.Logf("%s after %s; the host sent %d bytes", kps.ErrorMessage(err), time.Since(start).Round(time.Millisecond), host.BytesSent())
		})
	}
}

// endless repeats a line for ever.
type endless struct {
	line []byte
	off  int
}

func (r *endless) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.line[r.off:])
		n += c
		r.off = (r.off + c) % len(r.line)
	}
	return n, nil
}

func TestScriptOutputBounds(t *testing.T) {
	for _, c := range []struct {
		name   string
		r      io.Reader
		want   string
		keeps  int // at most this much kept, besides the ordinary lines (bounded by maxOtherOutput)
		marker string
	}{
		{"endless hex", io.MultiReader(strings.NewReader("begin authorized_keys\n"), &endless{line: []byte(" 41 42 43 0a\n")}),
			"more than 4 MiB for ~/.ssh/authorized_keys", MaxAuthorizedKeys, "ready"},
		{"endless config", io.MultiReader(strings.NewReader("absent authorized_keys\nbegin sshd_config\n"), &endless{line: []byte(" 41 42 43 0a\n")}),
			"more than 1 MiB for the sshd configuration", MaxSSHDConfig, "ready"},
		{"endless lines", &endless{line: []byte("Welcome to a very chatty login shell\n")}, "more output than a task needs", maxOtherOutput, "ready"},
		{"endless line", &endless{line: []byte("x")}, "a line longer than a task needs", 0, "ready"},
		// The marker inside a section is data, not the marker.
		{"marker in a section", io.MultiReader(strings.NewReader("begin authorized_keys\nready\n"), &endless{line: []byte(" 41\n")}),
			"not hex", 0, "ready"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := newScriptOutput()
			err := o.read(bufio.NewReaderSize(c.r, 64<<10), c.marker)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
			kept := len(o.buf)
			for _, s := range o.sections {
				kept += len(s)
			}
			if kept > c.keeps || len(o.other) > maxOtherOutput {
				t.Fatalf("kept %d bytes and %d of ordinary lines, bounds %d and %d", kept, len(o.other), c.keeps, maxOtherOutput)
			}
		})
	}

	// Within the bounds: a state as the task script prints it, junk from a login script
	// around it, then the marker.
	ak := strings.Repeat("ssh-ed25519 AAAA k\n", 1000)
	var out strings.Builder
	out.WriteString("Last login: yesterday\nbegin authorized_keys\n")
	for i := 0; i < len(ak); i += 16 {
		for _, b := range []byte(ak[i:min(i+16, len(ak))]) {
			fmt.Fprintf(&out, " %02x", b)
		}
		out.WriteString("\n")
	}
	out.WriteString("end authorized_keys\nversion OpenSSH_9.2\nready\nafter\n")
	o := newScriptOutput()
	r := bufio.NewReader(strings.NewReader(out.String()))
	if err := o.read(r, "ready"); err != nil {
		t.Fatal(err)
	}
	if string(o.sections["authorized_keys"]) != ak || o.fields["version"] != "OpenSSH_9.2" {
		t.Fatalf("parsed %d bytes of authorized_keys, fields %v", len(o.sections["authorized_keys"]), o.fields)
	}
	// The rest stays for the next read.
	if err := o.read(r, ""); !errors.Is(err, io.EOF) || o.fields["after"] != "" || !strings.HasSuffix(string(o.other), "after\n") {
		t.Fatalf("second read: %v, other %q", err, o.other)
	}
}

// TestAfterLoginComesBeforeAnyChange (issue 18): the job calls AfterLogin once it has logged in
// and before anything on the host changes — an unbind as well, which announces no write — and
// a refusal changes nothing: the runner waits there for its claim to be committed. A refused
// login never reaches it.
func TestAfterLoginComesBeforeAnyChange(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
	key, foreign := newKey(t, "k"), newKey(t, "break-glass")
	old := "# keep\n" + foreign.public + "\n"
	h.WriteAuthorizedKeys(t, old)

	var calls []string // what the host held at each call
	hook := func(refuse error) func(context.Context) error {
		return func(context.Context) error {
			held, _ := h.AuthorizedKeys(t)
			calls = append(calls, held)
			return refuse
		}
	}
	refused := kps.Errorf(kps.TaskInterrupted, "claim not committed")
	for _, op := range []kps.Operation{kps.OpReset, kps.OpUnbind} {
		j := job
		j.Operation, j.InstallKey, j.RemoveKeys = op, key.public, nil
		if op == kps.OpUnbind {
			j.InstallKey, j.RemoveKeys = "", []string{foreign.public}
		}
		j.AfterLogin, calls = hook(refused), nil
		_, err := execute(t, e, j)
		if kps.ErrorCode(err) != kps.TaskInterrupted {
			t.Fatalf("%s refused after login: %v", op, err)
		}
		if len(calls) != 1 || calls[0] != old {
			t.Fatalf("%s: AfterLogin saw %q, want one call with the old content", op, calls)
		}
		if got, _ := h.AuthorizedKeys(t); got != old {
			t.Fatalf("%s refused after login changed the host: %q", op, got)
		}
		left, _ := filepath.Glob(filepath.Join(h.Home, ".ssh", ".authorized_keys.kps-*"))
		if len(left) != 0 {
			t.Fatalf("%s refused after login staged %v", op, left)
		}
	}

	bad := job
	bad.InstallKey = key.public
	bad.Login.Key = "not-the-password"
	bad.AfterLogin, calls = hook(nil), nil
	_, err := execute(t, e, bad)
	wantCode(t, err, kps.TaskAuthFailed, h)
	if len(calls) != 0 {
		t.Fatal("AfterLogin was called for a refused login")
	}

	job.InstallKey, job.AfterLogin, calls = key.public, hook(nil), nil
	mustExecute(t, e, job)
	if len(calls) != 1 || calls[0] != old {
		t.Fatalf("AfterLogin saw %q, want one call before the write", calls)
	}
	if got, _ := h.AuthorizedKeys(t); !strings.Contains(got, blob64(key.public)) {
		t.Fatalf("the key was not written: %q", got)
	}
}
