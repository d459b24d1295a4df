package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
	"github.com/openkps/kps/sshkey"
)

// outcome is one server's line of a fleet command's summary.
type outcome struct {
	Server       string `json:"server_id"`
	FailedTaskID string `json:"failed_task_id,omitempty"` // task retry: the record this one replaced
	Previous     string `json:"previous_keypair,omitempty"`
	KeyPair      string `json:"keypair_name,omitempty"`
	Operation    string `json:"operation,omitempty"`
	TaskID       string `json:"task_id,omitempty"`
	// Status is the task's final status (SUCCESS_RESET, FAILED_REPLACE…); SUBMITTED for a task
	// not waited for; READY_…/RUNNING_… for one still going when the wait was interrupted;
	// FAILED for a server the service refused before any task existed.
	Status    string `json:"status"`
	ErrorCode string `json:"error_code,omitempty"`
	ErrorMsg  string `json:"error_msg,omitempty"`
}

func (o *outcome) failed() bool {
	return o.Status == "FAILED" || client.StatusPhase(o.Status) == kps.PhaseFailed
}

func (o *outcome) refuse(err error) {
	o.Status, o.ErrorCode, o.ErrorMsg = "FAILED", client.Code(err), errorText(err)
}

// submitted records the answer to one submission: its task, or the refusal. It reports
// whether a task was submitted.
func (o *outcome) submitted(s client.Submitted, err error) bool {
	if err != nil {
		o.refuse(err)
		return false
	}
	o.TaskID, o.Status = s.TaskID, "SUBMITTED"
	return true
}

// fleetFlags are what bind, rotate and unbind share: the servers, the caller's login
// credential and waiting.
type fleetFlags struct {
	servers, from   string
	noWait          bool
	passwordStdin   bool
	askPassword     bool
	keyFile         string
	keepLoginKey    bool
	port            int
	disablePassword bool
	ttl             string        // --ttl as given
	expiry          time.Duration // --ttl parsed
}

func (f *fleetFlags) defineServers(cmd *cobra.Command, a *app) {
	cmd.Flags().StringVar(&f.servers, "servers", "", "comma-separated server `IDs`")
	cmd.Flags().StringVar(&f.from, "servers-from", "", "`file` with one server ID a line, # comments (- for standard input)")
	cmd.Flags().BoolVar(&f.noWait, "no-wait", false, "submit, print the task IDs as SUBMITTED and return without waiting")
	cmd.RegisterFlagCompletionFunc("servers", a.completeServerList)
}

func (f *fleetFlags) defineLogin(cmd *cobra.Command, replaces bool) {
	fl := cmd.Flags()
	fl.BoolVar(&f.passwordStdin, "auth-password-stdin", false, "log in with the password on standard input (one line)")
	fl.BoolVar(&f.askPassword, "ask-auth-password", false, "ask for the login password on the terminal, without echo (like ansible -k)")
	if replaces {
		fl.StringVar(&f.keyFile, "auth-key-file", "", "log in with this private key `file`; its public key is REMOVED from authorized_keys, being the key replaced (see --keep-login-key)")
		fl.BoolVar(&f.keepLoginKey, "keep-login-key", false, "leave the --auth-key-file key in authorized_keys")
	} else {
		fl.StringVar(&f.keyFile, "auth-key-file", "", "log in with this private key `file`")
	}
}

// serverIDs reads --servers and --servers-from, in order, without duplicates.
func (a *app) serverIDs(f *fleetFlags) ([]string, error) {
	var ids []string
	for _, s := range strings.Split(f.servers, ",") {
		if s = strings.TrimSpace(s); s != "" {
			ids = append(ids, s)
		}
	}
	if f.from != "" {
		text, err := a.readFlagFile("--servers-from", f.from)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(strings.NewReader(text))
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line != "" && !strings.HasPrefix(line, "#") {
				ids = append(ids, strings.Fields(line)[0])
			}
		}
	}
	seen := map[string]bool{}
	out := ids[:0]
	for _, id := range ids {
		if !kps.ValidServerID(id) {
			return nil, usagef("invalid server ID %q: 1 to 255 printable characters without spaces", id)
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return nil, usagef("give --servers a,b,c or --servers-from FILE")
	}
	return out, nil
}

// loginKey is the caller's credential for the hosts and what the plan says about it.
type loginKey struct {
	cred        *kps.Credential
	file        string
	fingerprint string // SHA256 of the key of --auth-key-file
	public      *sshkey.PublicKey
}

// how says in words what logs in to the hosts: the key file or password given (a REPLACE), or
// without one (a nil login) what the service holds, in the caller's words.
func (l *loginKey) how(without string) string {
	switch {
	case l == nil:
		return without
	case l.file != "":
		return "the key of " + l.file + " (REPLACE)"
	default:
		return "the password given (REPLACE)"
	}
}

// fleetClient is what bind and unbind start with: the servers named, the caller's login, the
// client.
func (a *app) fleetClient(f *fleetFlags) ([]string, *loginKey, *client.Client, error) {
	ids, err := a.serverIDs(f)
	if err != nil {
		return nil, nil, nil, err
	}
	login, cl, err := a.loginClient(f)
	return ids, login, cl, err
}

// login reads the caller's credential: a password (standard input or a prompt) or a key file.
// loginClient is login, then the client of the selected profile.
func (a *app) loginClient(f *fleetFlags) (*loginKey, *client.Client, error) {
	login, err := a.login(f)
	if err != nil {
		return nil, nil, err
	}
	cl, err := a.client()
	return login, cl, err
}

func (a *app) login(f *fleetFlags) (*loginKey, error) {
	n := 0
	for _, given := range []bool{f.passwordStdin, f.askPassword, f.keyFile != ""} {
		if given {
			n++
		}
	}
	switch {
	case n > 1:
		return nil, usagef("give one of --auth-password-stdin, --ask-auth-password and --auth-key-file")
	case f.keepLoginKey && f.keyFile == "":
		return nil, usagef("--keep-login-key goes with --auth-key-file")
	case f.passwordStdin && f.from == "-":
		return nil, usagef("standard input cannot carry both the server list (--servers-from -) and the password (--auth-password-stdin)")
	case f.passwordStdin:
		pw, err := a.secretLine("--auth-password-stdin", "SSH password of the servers' login user: ")
		if err != nil {
			return nil, err
		}
		return &loginKey{cred: &kps.Credential{Type: kps.CredentialPassword, Key: pw}}, nil
	case f.askPassword:
		pw, err := a.prompt("SSH password of the servers' login user: ")
		if err != nil {
			return nil, usagef("--ask-auth-password: %v; give the password with --auth-password-stdin", err)
		}
		if pw == "" {
			return nil, usagef("--ask-auth-password: the password is empty")
		}
		return &loginKey{cred: &kps.Credential{Type: kps.CredentialPassword, Key: pw}}, nil
	case f.keyFile != "":
		b, err := os.ReadFile(f.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--auth-key-file %s: %w", f.keyFile, fileError(err))
		}
		_, pub, err := sshkey.ParsePrivateKey(string(b))
		if err != nil {
			return nil, fmt.Errorf("--auth-key-file %s: %s", f.keyFile, kps.ErrorMessage(err))
		}
		k, _ := ssh.ParsePublicKey(pub.Blob)
		return &loginKey{cred: &kps.Credential{Type: kps.CredentialKeyPair, Key: string(b)}, file: f.keyFile,
			fingerprint: ssh.FingerprintSHA256(k), public: pub}, nil
	}
	return nil, nil
}

const bindLong = `Each server gets the key pair installed in ~/.ssh/authorized_keys of its login user; the key
pair bound before (if any) is removed from it, so binding a new key pair to bound servers rotates
their key. Before anything is submitted, a plan says for each server which key pair it goes from
and to, and which keys will be removed.

How the service logs in: with each server's stored credential (RESET) unless you give yours
(REPLACE): --auth-password-stdin, --ask-auth-password or --auth-key-file. With --auth-key-file
the key you log in with is taken to be the key being replaced (kps-v3-api.md §6.3): its public
key is REMOVED from authorized_keys on every server. Give --keep-login-key to keep it (a
bootstrap or personal key), or log in with the currently bound key pair's private key.

Servers without a key pair are submitted ten at a time (batch-associate), bound ones one by one
(associate), four requests at once. Progress shows done/failed/total, the time and the host
being waited on; Ctrl-C stops waiting (exit 130) while the tasks go on in the service. Exit code
3 when some servers failed, 1 when all did.`

func (a *app) bindCommand() *cobra.Command {
	var f fleetFlags
	cmd := &cobra.Command{
		Use:   "bind NAME",
		Short: "bind a key pair to servers (rotating the key of bound ones), with a plan, progress and a summary",
		Long:  bindLong,
		Example: "kps keypair bind web --servers web-01,web-02,web-03\n" +
			"kps keypair bind web --servers-from fleet.txt --disable-password\n" +
			"kps keypair bind web-2027 --servers web-01 --auth-key-file web.pem    # rotate, logging in with the old key\n" +
			"kps keypair bind ops --servers db-01 --auth-key-file bootstrap.pem --keep-login-key\n" +
			"kps keypair bind web --servers web-01 --ask-auth-password",
		Args:              exactArgs(1, "key pair name"),
		ValidArgsFunction: a.completeKeyPairs(1),
	}
	f.defineServers(cmd, a)
	f.defineLogin(cmd, true)
	cmd.Flags().IntVar(&f.port, "port", 0, "SSH port for these tasks (default: each server's)")
	cmd.Flags().BoolVar(&f.disablePassword, "disable-password", false, "turn SSH password login off on the servers once the key is in place")
	cmd.Flags().StringVar(&f.ttl, "ttl", "", "the bindings expire this long after the request (seconds, or a `duration` such as 8h); the service then unbinds by itself")
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		name := args[0]
		if err := checkName(name); err != nil {
			return err
		}
		if f.ttl != "" {
			d, err := parseTTL(f.ttl)
			if err != nil {
				return err
			}
			f.expiry = d
		}
		if f.port < 0 || f.port > 65535 {
			return usagef("--port %d: a port is from 1 to 65535", f.port)
		}
		ids, login, cl, err := a.fleetClient(&f)
		if err != nil {
			return err
		}
		if _, err := cl.KeyPair(ctx, name); err != nil {
			return fmt.Errorf("key pair %s: %w", name, err)
		}
		servers, results, err := a.lookUp(ctx, cl, ids)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if s := servers[id]; s != nil {
				op := kps.OpReset
				if login != nil {
					op = kps.OpReplace
				}
				results = append(results, &outcome{Server: id, Previous: s.KeyPairName, KeyPair: name, Operation: string(op)})
			}
		}
		sortLike(results, ids)
		a.printPlan(ctx, cl, name, results, login, f.keepLoginKey)
		a.submitBinds(ctx, cl, results, login, &f)
		return a.finishFleet(ctx, cl, results, f.noWait, "servers")
	})
	return cmd
}

// sortLike orders results as the servers were given.
func sortLike(results []*outcome, ids []string) {
	pos := map[string]int{}
	for i, id := range ids {
		pos[id] = i
	}
	sort.SliceStable(results, func(i, j int) bool { return pos[results[i].Server] < pos[results[j].Server] })
}

// lookUp reads the inventory record of each server: unknown servers are refused here, with
// the service's code, before anything is submitted.
func (a *app) lookUp(ctx context.Context, cl *client.Client, ids []string) (map[string]*client.Server, []*outcome, error) {
	servers := map[string]*client.Server{}
	var refused []*outcome
	if len(ids) > 20 {
		// One paged read of the inventory costs less than a request per server.
		all := map[string]*client.Server{}
		for s, err := range cl.Servers(ctx, 1000) {
			if err != nil {
				return nil, nil, err
			}
			all[s.ID] = &s
		}
		for _, id := range ids {
			if s := all[id]; s != nil {
				servers[id] = s
			} else {
				o := &outcome{Server: id}
				o.refuse(kps.Errorf(kps.ErrServerNotFound, "Server '%s' is not in the inventory.", id))
				refused = append(refused, o)
			}
		}
		return servers, refused, nil
	}
	for _, id := range ids {
		s, err := cl.Server(ctx, id)
		switch {
		case err == nil:
			servers[id] = s
		case client.Code(err) != "":
			o := &outcome{Server: id}
			o.refuse(err)
			refused = append(refused, o)
		default:
			return nil, nil, err
		}
	}
	return servers, refused, nil
}

// printPlan says, before anything is submitted, what each server goes from and to and which
// keys leave authorized_keys.
func (a *app) printPlan(ctx context.Context, cl *client.Client, name string, results []*outcome, login *loginKey, keep bool) {
	type move struct{ from, to string }
	groups := map[move][]string{}
	var order []move
	for _, o := range results {
		if o.Status != "" {
			continue
		}
		m := move{firstOf(o.Previous, "(none)"), firstOf(o.KeyPair, "(none)")}
		if _, ok := groups[m]; !ok {
			order = append(order, m)
		}
		groups[m] = append(groups[m], o.Server)
	}
	if len(order) == 0 {
		return
	}
	w := a.con.Stderr
	how := login.how("each server's stored credential (RESET)")
	n := 0
	for _, m := range order {
		n += len(groups[m])
	}
	fmt.Fprintf(w, "kps: plan for %s, logging in with %s:\n", plural(n, "server"), how)
	previous := map[string]bool{}
	for _, m := range order {
		ids := groups[m]
		list := strings.Join(ids, ", ")
		if len(ids) > 6 {
			list = strings.Join(ids[:5], ", ") + fmt.Sprintf(" and %d more", len(ids)-5)
		}
		fmt.Fprintf(w, "  %s → %s: %s\n", m.from, m.to, list)
		if m.from != "(none)" && m.from != m.to {
			previous[m.from] = true
		}
	}
	var removed []string
	for p := range previous {
		removed = append(removed, p)
	}
	sort.Strings(removed)
	if len(removed) > 0 {
		fmt.Fprintf(w, "kps: removed from authorized_keys: the key of %s\n", strings.Join(removed, ", "))
	}
	if login == nil || login.file == "" {
		return
	}
	// Is the login key one of the key pairs being replaced? Then it goes either way.
	for _, p := range removed {
		if kp, err := cl.KeyPair(ctx, p); err == nil {
			if pk, err := sshkey.ParsePublicKey(kp.PublicKey); err == nil && sshkey.SameKey(pk, login.public) {
				fmt.Fprintf(w, "kps: the login key %s (%s) is the key of %s, which is replaced\n", login.fingerprint, login.file, p)
				return
			}
		}
	}
	if keep {
		fmt.Fprintf(w, "kps: the login key %s (%s) stays in authorized_keys (--keep-login-key)\n", login.fingerprint, login.file)
		return
	}
	fmt.Fprintf(w, "kps: the login key %s (%s) will be REMOVED from authorized_keys on %s (--keep-login-key keeps it)\n",
		login.fingerprint, login.file, plural(n, "server"))
}

// submitBinds submits the binds: servers without a key pair ten at a time, bound ones (and
// any the batch call found bound meanwhile) one by one, since only the single associate may
// replace a bound key pair; submitConcurrency requests at a time. Ctrl-C stops submitting;
// what was accepted goes on.
func (a *app) submitBinds(ctx context.Context, cl *client.Client, results []*outcome, login *loginKey, f *fleetFlags) {
	bind := func(o *outcome) client.Bind {
		b := client.Bind{KeyPairName: o.KeyPair, ServerID: o.Server, DisablePassword: f.disablePassword, Port: f.port,
			KeepLoginKey: f.keepLoginKey, TTL: f.expiry}
		if login != nil {
			b.Auth = login.cred
		}
		return b
	}
	var single, batch []*outcome
	for _, o := range results {
		switch {
		case o.Status != "":
		case o.Previous != "":
			single = append(single, o)
		default:
			batch = append(batch, o)
		}
	}
	// The batches go out a few at a time: a fleet's submission is over in about the time of its
	// slowest batch rather than the sum of all, and the first tasks start while the others are
	// still being submitted (issue 18).
	var mu sync.Mutex // guards single
	batches := (len(batch) + 9) / 10
	concurrently(ctx, batches, submitConcurrency, func(n int) {
		items := batch[n*10 : min(n*10+10, len(batch))]
		binds := make([]client.Bind, len(items))
		for i, o := range items {
			binds[i] = bind(o)
		}
		answers, err := cl.BatchBind(ctx, binds)
		if ctx.Err() != nil {
			return // not submitted: the interruption says so
		}
		if err != nil {
			for _, o := range items {
				o.refuse(err)
			}
			return
		}
		for i, o := range items {
			if i >= len(answers) {
				o.refuse(errors.New("the service gave no answer for this server"))
				continue
			}
			s := answers[i]
			switch {
			case s.Accepted():
				o.TaskID, o.Status = s.TaskID, "SUBMITTED"
			case s.ErrorCode == kps.ErrServerBound:
				mu.Lock()
				single = append(single, o) // bound since the plan was made
				mu.Unlock()
			default:
				o.Status, o.ErrorCode, o.ErrorMsg = "FAILED", s.ErrorCode, inWords(s.ErrorMsg)
			}
		}
	})
	concurrently(ctx, len(single), submitConcurrency, func(i int) {
		o := single[i]
		s, err := cl.Bind(ctx, bind(o))
		if ctx.Err() == nil {
			o.submitted(s, err)
		}
	})
}

// submitConcurrency is how many submissions a fleet command has in flight at once.
const submitConcurrency = 4

// concurrently calls fn(0), …, fn(n-1), at most width at a time, and returns when all calls
// have returned. Once ctx ends no further call starts.
func concurrently(ctx context.Context, n, width int, fn func(i int)) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, width)
	for i := 0; i < n && ctx.Err() == nil; i++ {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if ctx.Err() == nil {
				fn(i)
			}
		}()
	}
	wg.Wait()
}

func (a *app) unbindCommand() *cobra.Command {
	var f fleetFlags
	cmd := &cobra.Command{
		Use:   "unbind",
		Short: "remove the bound key pair from servers (and restore password login where kps disabled it)",
		Example: "kps keypair unbind --servers web-01,web-02\n" +
			"kps keypair unbind --servers web-01 --auth-key-file web.pem",
		Args: noArgs,
	}
	f.defineServers(cmd, a)
	f.defineLogin(cmd, false)
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		ids, login, cl, err := a.fleetClient(&f)
		if err != nil {
			return err
		}
		servers, results, err := a.lookUp(ctx, cl, ids)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if s := servers[id]; s != nil {
				results = append(results, &outcome{Server: id, Previous: s.KeyPairName, Operation: string(kps.OpUnbind)})
			}
		}
		sortLike(results, ids)
		a.printPlan(ctx, cl, "", results, nil, false)
		var cred *kps.Credential
		if login != nil {
			cred = login.cred
		}
		concurrently(ctx, len(results), submitConcurrency, func(i int) {
			o := results[i]
			if o.Status != "" {
				return
			}
			s, err := cl.Unbind(ctx, o.Server, cred)
			if ctx.Err() == nil {
				o.submitted(s, err)
			}
		})
		return a.finishFleet(ctx, cl, results, f.noWait, "servers")
	})
	return cmd
}

// finishFleet waits for the submitted tasks (unless noWait), prints the summary and returns
// the command's outcome: exit 3 when some failed, 1 when all did, 130 when interrupted.
func (a *app) finishFleet(ctx context.Context, cl *client.Client, results []*outcome, noWait bool, noun string) error {
	var waitErr error
	submitted := 0
	for _, o := range results {
		if o.TaskID != "" {
			submitted++
		}
	}
	if !noWait && submitted > 0 {
		waitErr = a.waitTasks(ctx, cl, results)
	}
	if waitErr == nil && ctx.Err() != nil {
		waitErr = a.interrupted(results)
	}
	failed := 0
	for _, o := range results {
		if o.failed() {
			failed++
		}
	}
	retries := false
	for _, o := range results {
		retries = retries || o.FailedTaskID != ""
	}
	err := a.emit(results, func(w io.Writer) {
		cols := []string{"server", "from", "to", "task", "status", "code", "message"}
		if retries {
			cols = append([]string{"retried"}, cols...)
		}
		t := newTable(w, cols...)
		for _, o := range results {
			from, to := o.Previous, o.KeyPair
			if o.Operation == string(kps.OpUnbind) {
				to = "(none)"
			}
			cells := []any{o.Server, from, to, o.TaskID, o.Status, o.ErrorCode, o.ErrorMsg}
			if retries {
				cells = append([]any{o.FailedTaskID}, cells...)
			}
			t.row(cells...)
		}
		t.flush()
		if noWait {
			fmt.Fprintf(w, "%d submitted, %d refused\n", len(results)-failed, failed)
		} else {
			fmt.Fprintf(w, "%d succeeded, %d failed\n", len(results)-failed-unfinished(results), failed)
		}
	})
	if waitErr != nil {
		return waitErr
	}
	if err != nil {
		return err
	}
	if noWait && submitted > 0 {
		fmt.Fprintf(a.con.Stderr, "kps: %s submitted and not waited for; follow them with %s\n", plural(submitted, "task"), followHint(results))
	}
	return batchOutcome(failed, len(results), noun)
}

func unfinished(results []*outcome) int {
	n := 0
	for _, o := range results {
		if o.TaskID != "" && !client.Ended(o.Status) {
			n++
		}
	}
	return n
}

// followHint is the command that follows the unfinished tasks of results.
func followHint(results []*outcome) string {
	var ids []string
	for _, o := range results {
		if o.TaskID != "" && !client.Ended(o.Status) {
			ids = append(ids, o.TaskID)
		}
	}
	if len(ids) == 0 {
		return "kps task list-failed"
	}
	if len(ids) <= 5 {
		return "`kps task wait " + strings.Join(ids, " ") + "`"
	}
	return "`kps task list-running` and `kps task list-failed`"
}

// interrupted is the error of a wait cut short: how many tasks go on and how to follow them.
func (a *app) interrupted(results []*outcome) error {
	going, notSubmitted := 0, 0
	for _, o := range results {
		switch {
		case o.TaskID != "" && !client.Ended(o.Status):
			going++
		case o.TaskID == "" && o.Status == "":
			notSubmitted++
			o.Status = "NOT SUBMITTED"
		}
	}
	msg := fmt.Sprintf("interrupted: %s %s on in the service", plural(going, "task"), map[bool]string{true: "goes", false: "go"}[going == 1])
	if going > 0 {
		msg += "; follow them with " + followHint(results)
	}
	switch {
	case notSubmitted == 1:
		msg += "; 1 server was not submitted"
	case notSubmitted > 1:
		msg += fmt.Sprintf("; %d servers were not submitted", notSubmitted)
	}
	return interruptedError{msg}
}

// parseTTL reads --ttl: whole seconds, or a Go duration ("8h", "90m"), from 1s to 10 years.
func parseTTL(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if n, nerr := strconv.ParseInt(v, 10, 64); nerr == nil && n <= int64(kps.MaxBindingTTL/time.Second) {
		d, err = time.Duration(n)*time.Second, nil
	}
	if err != nil || d < time.Second || d > kps.MaxBindingTTL {
		return 0, usagef("--ttl %q: give seconds or a duration such as 8h, from 1s to 10 years", v)
	}
	return d, nil
}
