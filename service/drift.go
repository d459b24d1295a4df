package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps"
)

// Drift checks (kps-v3-api.md §7.2, an OpenKPS extension): a read-only look at each server —
// what authorized_keys holds, its mode and owner, and what sshd -T says of password login and
// AuthorizedKeysFile — compared with what the service believes (the binding).

// MaxDriftServers bounds the servers one check names.
const MaxDriftServers = 1000

// MaxUnmanagedKeys bounds the keys nobody manages a result lists; UnmanagedCount counts them
// all. A host may hold thousands, and the result is kept on the server's record.
const MaxUnmanagedKeys = 100

// hostText makes a value the host printed safe to store and show: what is not UTF-8 and every
// control character (a terminal escape in a key comment, say) becomes U+FFFD, and it is cut
// at max characters. The host is not trusted (docs/SECURITY.md §5.2).
func hostText(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return utf8.RuneError
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	if utf8.RuneCountInString(s) > max {
		return string([]rune(s)[:max]) + "…"
	}
	return s
}

// DriftStore is what drift checks need of the store.
type DriftStore interface {
	kps.DriftStore
	Server(ctx context.Context, projectID, id string) (*kps.Server, error)
	ListServers(ctx context.Context, projectID string, p kps.Page) ([]kps.Server, int, error)
	Binding(ctx context.Context, projectID, serverID string) (*kps.Binding, error)
	KeyPair(ctx context.Context, projectID, name, userID string) (*kps.KeyPair, error)
	PinHostKey(ctx context.Context, projectID, id, key string) ([]string, error)
	// Audit is the store on which a change records ev in its own transaction (kps.Store).
	Audit(ev *kps.AuditEvent) kps.Store
}

// Drift implements kps.DriftService and the scheduled checks of --drift-interval.
type Drift struct {
	Store     DriftStore
	Sealer    kps.Sealer
	Inspector kps.HostInspector
	Log       *slog.Logger
	// Concurrency is how many hosts are read at once (16 when zero); Timeout bounds one host
	// (60s when zero).
	Concurrency int
	Timeout     time.Duration
	// Observe, when set, receives every finished check (a metrics registry, say).
	Observe func(c *kps.DriftCheck)
	// Lease is how long a check this process runs stays RUNNING without a renewal by Maintain
	// (kps.DriftCheckLease when zero): a process that dies leaves its checks to be
	// INTERRUPTED by whoever runs Maintain next — another replica, or this one restarted.
	Lease time.Duration

	mu      sync.Mutex
	running map[string]bool // the checks this process runs, whose leases Maintain renews

	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ kps.DriftService = (*Drift)(nil)

func (d *Drift) init() {
	d.once.Do(func() {
		d.ctx, d.cancel = context.WithCancel(context.Background())
		if d.Log == nil {
			d.Log = slog.New(slog.DiscardHandler)
		}
		d.running = map[string]bool{}
	})
}

func (d *Drift) lease() time.Duration {
	if d.Lease > 0 {
		return d.Lease
	}
	return kps.DriftCheckLease
}

// hold and release keep the set of checks whose leases Maintain renews.
func (d *Drift) hold(id string) {
	d.mu.Lock()
	d.running[id] = true
	d.mu.Unlock()
}

func (d *Drift) release(id string) {
	d.mu.Lock()
	delete(d.running, id)
	d.mu.Unlock()
}

// Maintain renews the leases of the checks this process runs every third of the lease, and
// INTERRUPTs the RUNNING checks whose lease has passed — those of a process that died — until
// ctx ends.
func (d *Drift) Maintain(ctx context.Context) {
	d.init()
	t := time.NewTicker(d.lease() / 3)
	defer t.Stop()
	for {
		d.mu.Lock()
		ids := make([]string, 0, len(d.running))
		for id := range d.running {
			ids = append(ids, id)
		}
		d.mu.Unlock()
		if err := d.Store.RenewDriftChecks(ctx, ids, d.lease()); err != nil && ctx.Err() == nil {
			d.Log.Error("renewing the leases of drift checks failed", "err", err)
		}
		if n, err := d.Store.InterruptDriftChecks(ctx, false); err != nil && ctx.Err() == nil {
			d.Log.Error("interrupting dead drift checks failed", "err", err)
		} else if n > 0 {
			d.Log.Warn("drift checks interrupted: the process running them stopped renewing their lease", "drift_checks", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Stop ends the checks under way and waits for their goroutines. They stay RUNNING until they
// are INTERRUPTED: at the next start of a sole instance, or by Maintain (of any replica) once
// their lease passes.
func (d *Drift) Stop() {
	d.init()
	d.cancel()
	d.wg.Wait()
}

// StartDriftCheck implements kps.DriftService. Every listed server must exist (KPS.6204); the
// check runs in the background and is read with DriftCheck.
func (d *Drift) StartDriftCheck(ctx context.Context, p *kps.Principal, serverIDs []string) (*kps.DriftCheck, error) {
	d.init()
	servers, err := d.servers(ctx, p.ProjectID, serverIDs)
	if err != nil {
		return nil, err
	}
	c := &kps.DriftCheck{ID: uuid.NewString(), ProjectID: p.ProjectID, ServerIDs: serverIDs, Lease: d.lease()}
	// The start is recorded in the check's own transaction (docs/spec/audit.md).
	var st kps.DriftStore = d.Store
	if p.Audit != nil {
		st = d.Store.Audit(p.Audit)
	}
	if err := st.CreateDriftCheck(ctx, c); err != nil {
		return nil, err
	}
	d.hold(c.ID)
	// The check the caller gets back is not the one the background run fills in: the handler
	// renders it while the run writes results and state.
	caller, running := *p, *c
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.run(d.ctx, &running, servers, &caller)
	}()
	return c, nil
}

// DriftCheck implements kps.DriftService.
func (d *Drift) DriftCheck(ctx context.Context, p *kps.Principal, id string) (*kps.DriftCheck, error) {
	return d.Store.DriftCheck(ctx, p.ProjectID, id)
}

// ListDriftChecks implements kps.DriftService.
func (d *Drift) ListDriftChecks(ctx context.Context, p *kps.Principal, pg kps.Page) ([]kps.DriftCheck, int, error) {
	return d.Store.ListDriftChecks(ctx, p.ProjectID, pg)
}

// servers returns the servers named (each must exist), or every server of the project.
func (d *Drift) servers(ctx context.Context, projectID string, ids []string) ([]kps.Server, error) {
	if len(ids) > 0 {
		out := make([]kps.Server, 0, len(ids))
		for _, id := range ids {
			s, err := d.Store.Server(ctx, projectID, id)
			if err != nil {
				return nil, err
			}
			out = append(out, *s)
		}
		return out, nil
	}
	var out []kps.Server
	for off := 0; ; off += 1000 {
		page, total, err := d.Store.ListServers(ctx, projectID, kps.Page{Limit: 1000, Offset: off})
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) == 0 || off+len(page) >= total {
			return out, nil
		}
	}
}

// RunSchedule checks every server of every project each interval until ctx ends. The first
// round starts after one interval.
func (d *Drift) RunSchedule(ctx context.Context, interval time.Duration) {
	d.init()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		projects, err := d.Store.DriftProjects(ctx)
		if err != nil {
			if ctx.Err() == nil {
				d.Log.Error("scheduled drift check: listing the projects failed", "err", err)
			}
			continue
		}
		for _, project := range projects {
			// Replicas on one PostgreSQL each run the schedule: a project checked less than
			// half an interval ago (by another replica, or on request) is left alone.
			if recent, _, err := d.Store.ListDriftChecks(ctx, project, kps.Page{Limit: 1}); err == nil && len(recent) == 1 &&
				time.Since(recent[0].Created) < interval/2 {
				continue
			}
			servers, err := d.servers(ctx, project, nil)
			if err != nil || len(servers) == 0 {
				continue
			}
			c := &kps.DriftCheck{ID: uuid.NewString(), ProjectID: project, Scheduled: true, Lease: d.lease()}
			if err := d.Store.CreateDriftCheck(ctx, c); err != nil {
				if ctx.Err() == nil {
					d.Log.Error("scheduled drift check: creating it failed", "project_id", project, "err", err)
				}
				continue
			}
			d.hold(c.ID)
			d.run(ctx, c, servers, nil)
		}
	}
}

// run reads every server, at most Concurrency at once, and records the results. caller is nil
// for a scheduled check.
func (d *Drift) run(ctx context.Context, c *kps.DriftCheck, servers []kps.Server, caller *kps.Principal) {
	defer d.release(c.ID)
	conc := d.Concurrency
	if conc <= 0 {
		conc = 16
	}
	results := make([]kps.DriftResult, len(servers))
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i := range servers {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = d.checkServer(ctx, c, &servers[i], caller)
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	c.Results = results
	if err := d.Store.FinishDriftCheck(ctx, c); err != nil {
		d.Log.Error("recording a drift check failed", "drift_check", c.ID, "err", err)
		return
	}
	drifted := 0
	for _, r := range results {
		if r.Drift || !r.Checked {
			drifted++
		}
	}
	d.Log.Info("drift check done", "drift_check", c.ID, "project_id", c.ProjectID, "servers", len(results),
		"drifted_or_unreadable", drifted, "scheduled", c.Scheduled)
	if d.Observe != nil {
		d.Observe(c)
	}
}

// checkServer reads one server and compares it with its binding.
func (d *Drift) checkServer(ctx context.Context, c *kps.DriftCheck, srv *kps.Server, caller *kps.Principal) kps.DriftResult {
	r := kps.DriftResult{ServerID: srv.ID, BoundKey: "none", Unmanaged: []kps.DriftKey{}, FileProblems: []string{},
		Password: "unknown", CheckTime: time.Now().UnixMilli()}
	fail := func(err error) kps.DriftResult {
		r.Checked, r.ErrorCode, r.ErrorMsg = false, kps.ErrorCode(err), kps.ErrorMessage(err)
		return r
	}
	binding, err := d.Store.Binding(ctx, srv.ProjectID, srv.ID)
	if err != nil {
		return fail(err)
	}
	login, err := d.login(ctx, srv, binding, caller)
	if err != nil {
		return fail(err)
	}
	job := kps.HostJob{TaskID: c.ID, Address: srv.Address, Port: srv.Port, User: srv.User, HostKeys: srv.HostKeys,
		SSHDConfig: srv.SSHDConfig, Login: login}
	job.PinHostKey = func(ctx context.Context, key string) error {
		pins, err := d.Store.PinHostKey(ctx, srv.ProjectID, srv.ID, key)
		if err != nil {
			return err
		}
		for _, p := range pins {
			if keyBlob(p) == keyBlob(key) {
				return nil
			}
		}
		return kps.Errorf(kps.TaskHostKeyMismatch, "The host key of server '%s' does not match the key recorded for it.", srv.ID)
	}
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = time.Minute
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	in, err := d.Inspector.Inspect(hctx, job)
	if err != nil {
		if kps.ErrorCode(err) == kps.TaskWriteFailed {
			// The home, ~/.ssh or authorized_keys is such that a task would refuse it (a
			// group-writable home, a symlink): a file problem, found.
			r.Checked, r.Drift = true, true
			r.KeyPairName = srv.KeyPairName
			r.FileProblems = append(r.FileProblems, kps.ErrorMessage(err))
			return r
		}
		return fail(err)
	}
	r.Checked = true
	Compare(&r, srv, binding, login, &in)
	return r
}

// login is what a drift check logs in with, by the rules of a task without server.auth
// (kps-v3-api.md §6.1 step 4): the stored credential, else the hosted private key of the
// bound key pair — for a caller who could export it (visible, ExportRole), or for a scheduled
// check, whose key pair was bound by such a caller — and either only where CheckLogin lets a
// stored secret go.
func (d *Drift) login(ctx context.Context, srv *kps.Server, b *kps.Binding, caller *kps.Principal) (kps.Credential, error) {
	source := kps.LoginService
	if len(srv.Credential) == 0 {
		if b == nil || b.PrivateKey == nil {
			return kps.Credential{}, kps.Errorf(kps.ErrNoCredential, "Server '%s' has no service credential and no hosted private key of a bound key pair to read it with.", srv.ID)
		}
		if caller != nil {
			if !caller.Has(kps.ExportRole) {
				return kps.Credential{}, kps.Errorf(kps.ErrHostedKeyForbidden, "Server '%s' has no service credential, and the hosted private key of its bound key pair '%s' is not one you may use.", srv.ID, b.KeyPairName)
			}
			if _, err := d.Store.KeyPair(ctx, srv.ProjectID, b.KeyPairName, caller.UserID); err != nil {
				return kps.Credential{}, kps.Errorf(kps.ErrHostedKeyForbidden, "Server '%s' has no service credential, and the hosted private key of its bound key pair '%s' is not one you may use.", srv.ID, b.KeyPairName)
			}
		}
		source = kps.LoginHosted
	}
	if err := srv.CheckLogin(source, 0); err != nil {
		return kps.Credential{}, err
	}
	if source == kps.LoginHosted {
		plain, err := d.Sealer.Open(b.PrivateKey, kps.PrivateKeyAAD(srv.ProjectID, b.KeyPairName))
		if err != nil {
			return kps.Credential{}, err
		}
		return kps.Credential{Type: kps.CredentialKeyPair, Key: string(plain)}, nil
	}
	plain, err := d.Sealer.Open(srv.Credential, kps.CredentialAAD(srv.ProjectID, srv.ID))
	if err != nil {
		return kps.Credential{}, err
	}
	var cred kps.Credential
	if err := json.Unmarshal(plain, &cred); err != nil {
		return kps.Credential{}, err
	}
	return cred, nil
}

// Compare fills r from what the host holds against the binding: the bound key present,
// missing or duplicated; every other key but the one the check logged in with is a key nobody
// manages; password login against what the binding implies; the file's mode and owner, and an
// AuthorizedKeysFile that does not read ~/.ssh/authorized_keys.
func Compare(r *kps.DriftResult, srv *kps.Server, b *kps.Binding, login kps.Credential, in *kps.HostInspection) {
	var bound, loginKey []byte
	if b != nil {
		r.KeyPairName = b.KeyPairName
		if pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(b.PublicKey)); err == nil {
			bound = pk.Marshal()
		}
		if b.PasswordDisabled {
			r.PasswordExpected = "no"
		}
	}
	if login.Type == kps.CredentialKeyPair {
		if s, err := ssh.ParsePrivateKey([]byte(login.Key)); err == nil {
			loginKey = s.PublicKey().Marshal()
		}
	}
	matches := 0
	for i, line := range bytes.Split(in.AuthorizedKeys, []byte("\n")) {
		trimmed := bytes.TrimSpace(line)
		if len(trimmed) == 0 || trimmed[0] == '#' {
			continue
		}
		pk, comment, options, _, err := ssh.ParseAuthorizedKey(trimmed)
		if err != nil {
			r.FileProblems = append(r.FileProblems, "line "+strconv.Itoa(i+1)+" of authorized_keys is not a key sshd can read")
			continue
		}
		blob := pk.Marshal()
		switch {
		case bound != nil && bytes.Equal(blob, bound):
			matches++
		case loginKey != nil && bytes.Equal(blob, loginKey):
			// The service's own login key: managed by whoever stored the credential.
		default:
			r.UnmanagedCount++
			if len(r.Unmanaged) >= MaxUnmanagedKeys {
				continue
			}
			sum := sha256.Sum256(blob)
			r.Unmanaged = append(r.Unmanaged, kps.DriftKey{Fingerprint: "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:]),
				Type: hostText(pk.Type(), 64), Comment: hostText(comment, 256), Options: hostText(strings.Join(options, ","), 256), Line: i + 1})
		}
	}
	switch {
	case bound == nil:
		r.BoundKey = "none"
	case matches == 0:
		r.BoundKey = "missing"
	case matches == 1:
		r.BoundKey = "present"
	default:
		r.BoundKey = "duplicated"
	}
	in.Mode, in.Owner, in.UID, in.SSHDir = hostText(in.Mode, 16), hostText(in.Owner, 32), hostText(in.UID, 16), hostText(in.SSHDir, 16)
	if in.AuthorizedKeysExists {
		r.FileMode, r.FileOwner = in.Mode, in.Owner
		if len(in.Mode) >= 10 && (in.Mode[5] == 'w' || in.Mode[8] == 'w') {
			r.FileProblems = append(r.FileProblems, "authorized_keys is writable by group or others ("+in.Mode+"): sshd's StrictModes ignores it")
		}
		if uid, _, _ := strings.Cut(in.Owner, ":"); in.UID != "" && uid != in.UID && uid != "0" {
			r.FileProblems = append(r.FileProblems, "authorized_keys is owned by UID "+uid+", not by the login user (UID "+in.UID+")")
		}
	}
	if len(in.SSHDir) >= 10 && (in.SSHDir[5] == 'w' || in.SSHDir[8] == 'w') {
		r.FileProblems = append(r.FileProblems, "~/.ssh is writable by group or others ("+in.SSHDir+")")
	}
	if in.SSHD != nil {
		r.Password = hostText(in.SSHD["passwordauthentication"], 16)
		if r.Password == "" {
			r.Password = "unknown"
		}
		r.AuthorizedKeysFile = hostText(in.SSHD["authorizedkeysfile"], 256)
		if r.AuthorizedKeysFile != "" && !readsHomeFile(r.AuthorizedKeysFile) {
			r.FileProblems = append(r.FileProblems, "sshd reads AuthorizedKeysFile "+r.AuthorizedKeysFile+", not ~/.ssh/authorized_keys: keys the service writes are ignored")
		}
	}
	r.Drift = r.BoundKey == "missing" || r.BoundKey == "duplicated" || r.UnmanagedCount > 0 || len(r.FileProblems) > 0 ||
		(r.PasswordExpected != "" && r.Password != "unknown" && r.Password != r.PasswordExpected)
}

// readsHomeFile reports whether an AuthorizedKeysFile value names ~/.ssh/authorized_keys.
func readsHomeFile(v string) bool {
	return slices.ContainsFunc(strings.Fields(v), func(f string) bool {
		return f == ".ssh/authorized_keys" || f == "%h/.ssh/authorized_keys" || f == "~/.ssh/authorized_keys"
	})
}

// keyBlob is the type and base64 of an authorized_keys line, without its comment.
func keyBlob(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return line
	}
	return f[0] + " " + f[1]
}
