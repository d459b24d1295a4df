package sshhost

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/sshdtest"
)

// cutProxy relays TCP connections to a target. The next connection is cut after limit bytes
// have passed (both directions counted); a negative limit never cuts, and the limit applies
// to one connection only (a passing fault), unless down is set: then every connection after
// the cut one is closed at once (the host stays unreachable). Odd limits reset the
// connection, even ones close it cleanly, so both kinds of loss are exercised.
type cutProxy struct {
	ln     net.Listener
	target string
	limit  atomic.Int64
	down   atomic.Bool
	cut    atomic.Bool  // a connection was cut since limit was set
	last   atomic.Int64 // bytes relayed by the last connection that ended
	live   atomic.Int64 // bytes relayed so far by the current connection
	conns  atomic.Int64 // connections accepted
	// cutAt, when not negative, cuts the current connection once it has relayed more bytes
	// (a limit set while the connection runs: see cutAfterStaged).
	cutAt atomic.Int64
	wg    sync.WaitGroup
}

// arm makes the next connection be cut after n bytes.
func (p *cutProxy) arm(n int64, down bool) {
	p.cut.Store(false)
	p.down.Store(down)
	p.cutAt.Store(-1)
	p.limit.Store(n)
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	p.limit.Store(-1)
	p.cutAt.Store(-1)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.relay(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *cutProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *cutProxy) relay(down *net.TCPConn) {
	p.conns.Add(1)
	if p.down.Load() && p.cut.Load() {
		down.SetLinger(0)
		down.Close()
		return
	}
	limit := p.limit.Swap(-1)
	upc, err := net.Dial("tcp", p.target)
	if err != nil {
		down.Close()
		return
	}
	up := upc.(*net.TCPConn)
	if limit >= 0 && limit%2 == 1 {
		down.SetLinger(0)
		up.SetLinger(0)
	}
	var total atomic.Int64
	p.live.Store(0)
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			down.Close()
			up.Close()
		})
	}
	pipe := func(dst, src net.Conn, done *sync.WaitGroup) {
		defer done.Done()
		defer closeBoth()
		buf := make([]byte, 4096)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				limit := limit
				if limit < 0 {
					limit = p.cutAt.Load() // set while the connection runs, or -1
				}
				if limit >= 0 {
					after := total.Add(int64(n))
					p.live.Store(after)
					if after > limit {
						p.cut.Store(true)
						p.cutAt.Store(-1) // the next connection passes
						if allowed := int64(n) - (after - limit); allowed > 0 {
							dst.Write(buf[:allowed])
						}
						return
					}
				} else {
					p.live.Store(total.Add(int64(n)))
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	var done sync.WaitGroup
	done.Add(2)
	go pipe(up, down, &done)
	go pipe(down, up, &done)
	done.Wait()
	p.last.Store(total.Load())
}

// userProcesses counts the processes running as uid (the host's session processes).
func userProcesses(uid int) int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	want := "Uid:\t" + strconv.Itoa(uid) + "\t"
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err == nil && strings.Contains(string(b), want) {
			n++
		}
	}
	return n
}

// quiesce waits until nothing runs as the host's user any more: a script whose connection was
// cut may still be finishing (or cleaning up) on the host.
func quiesce(t *testing.T, h *sshdtest.Host) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for userProcesses(h.UID) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("processes of %s still run 15s after the cut", h.User)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNetworkFaultsMidTask cuts the SSH connection of a REPLACE job after N bytes, for N
// spread over the whole conversation (handshake, authentication, the task session: its
// command, the read, the staged content, "commit", the answer and the exit status). After every cut authorized_keys is exactly the old or
// exactly the new content, with mode 0600 and the user as owner, no temporary file is left
// behind, and the job succeeded exactly when the file holds the new content; otherwise it
// failed with a task outcome code and a message. A cut during the write is settled over a
// second connection (the proxy lets it through); for a few N in the write the host then
// stays unreachable, and the job fails saying the outcome is unknown.
func TestNetworkFaultsMidTask(t *testing.T) { networkFaults(t, sshdtest.Options{}) }

// TestNetworkFaultsMidTaskScript is TestNetworkFaultsMidTask on a host without the file transfer
// subsystem: the task script's dialogue, which hosts without it and the tasks that change the
// daemon configuration still use.
func TestNetworkFaultsMidTaskScript(t *testing.T) { networkFaults(t, sshdtest.Options{NoSFTP: true}) }

func networkFaults(t *testing.T, opt sshdtest.Options) {
	h, e, job, logs := setup(t, opt)
	oldKey, newKey, other := newKey(t, "old@kps"), newKey(t, "new@kps"), newKey(t, "unrelated")
	old := "# managed by hand, keep\n" + other.public + "\n" + oldKey.public + "\n" +
		"command=\"/bin/true\",no-pty " + other.public + " restricted\n"
	job.Operation, job.InstallKey, job.RemoveKeys = kps.OpReplace, newKey.public, []string{oldKey.public}

	// The new content, from a run without faults.
	h.WriteAuthorizedKeys(t, old)
	mustExecute(t, e, job)
	want, _ := h.AuthorizedKeys(t)
	if want == old || !strings.Contains(want, newKey.public) || strings.Contains(want, oldKey.public) {
		t.Fatalf("the REPLACE did not replace:\n%s", want)
	}

	proxy := startCutProxy(t, h.Addr())
	job.Port = proxy.port()
	// A cut never stalls (the proxy closes at once); the bound only has to outlast a loaded
	// machine's login, so that the settling connection does not time out.
	e.ConnectTimeout = 20 * time.Second

	// The size of a whole conversation through the proxy, where its write starts (the bytes
	// relayed once the executor has read the state, "ready", before it sends the new content)
	// and where the commit starts (once it has read "staged"). A cut aimed at the commit
	// counts from the moment "staged" arrives in the same run (cutAfterStaged): the length of
	// a conversation varies by a few packets from run to run, more than the commit takes.
	var ready, staged atomic.Int64
	var afterStaged atomic.Int64 // the cut of the current fault, counted from "staged"; -1: none
	afterStaged.Store(-1)
	e.Logger = slog.New(hookHandler{slogJSON(logs).Handler(), func(r slog.Record) {
		if r.Message != "remote step" {
			return
		}
		switch stepOf(r) {
		case stepLocate:
			ready.Store(proxy.live.Load())
		case stepWrite:
			if staged.CompareAndSwap(0, proxy.live.Load()) {
				if k := afterStaged.Load(); k >= 0 {
					proxy.cutAt.Store(staged.Load() + k)
				}
			}
		}
	}})
	h.WriteAuthorizedKeys(t, old)
	mustExecute(t, e, job)
	quiesce(t, h)
	full, write0, commit0 := proxy.last.Load(), ready.Load(), staged.Load()
	if full < 1000 || write0 <= 0 || write0 >= commit0 || commit0 >= full {
		t.Fatalf("a whole job relayed %d bytes, the write starting after %d, the commit after %d", full, write0, commit0)
	}

	// N from 0 through the version exchange, points spread over the whole conversation, more
	// over the write (from the new content to the exit status) and over the commit (from
	// "staged" to the end: the commit, and its answer, where the rename is done but not yet
	// confirmed), and one past the end (no cut at all); then a few in the write with the host
	// unreachable after.
	// Each cut costs about a second (a real sshd login and its clean-up): the default run
	// takes 25 points, KPS_FAULT_CUTS=all about a hundred.
	spread, write, end, down := int64(6), int64(8), int64(6), int64(2)
	if os.Getenv("KPS_FAULT_CUTS") == "all" {
		spread, write, end, down = 24, 32, 24, 6
	}
	type fault struct {
		n      int64
		down   bool
		staged bool // n counts from "staged"
	}
	var faults []fault
	for n := int64(0); n <= 64; n += 32 {
		faults = append(faults, fault{n: n})
	}
	for i := int64(1); i <= spread; i++ {
		faults = append(faults, fault{n: 64 + (full-64)*i/spread - i%3})
	}
	for i := int64(0); i < write; i++ {
		faults = append(faults, fault{n: write0 + (full-write0)*i/write + i%5})
	}
	for i := int64(0); i < end; i++ {
		faults = append(faults, fault{n: (full - commit0) * i / end, staged: true})
	}
	faults = append(faults, fault{n: full + 1000})
	for i := int64(0); i < down; i++ {
		faults = append(faults, fault{n: write0 + (full-write0)*(2*i+1)/(2*down), down: true})
	}

	// The runner is told before the host can change the file (HostJob.BeforeWrite): a cut run
	// whose file holds the new content was announced, whatever its outcome. (A run announced
	// and then cut before its commit arrived may have changed nothing: that costs the next
	// task only a removal of a key that is not there.)
	var announced atomic.Bool
	job.BeforeWrite = func(_ context.Context, step kps.HostWrite) error {
		if step == kps.WriteKey {
			if got, _ := h.AuthorizedKeys(t); got != old {
				t.Errorf("WriteKey announced after the file changed:\n%s", got)
			}
			announced.Store(true)
		}
		return nil
	}
	codes := map[string]int{}
	for _, f := range faults {
		n := f.n
		announced.Store(false)
		h.WriteAuthorizedKeys(t, old)
		if f.staged {
			proxy.arm(-1, false)
			staged.Store(0)
			afterStaged.Store(n)
			n += commit0 // roughly, for the messages
		} else {
			proxy.arm(n, f.down)
			afterStaged.Store(-1)
		}
		before := proxy.conns.Load()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		_, err := e.Execute(ctx, job)
		cancel()
		quiesce(t, h)
		reconnected := proxy.conns.Load()-before > 1

		got, exists := h.AuthorizedKeys(t)
		switch {
		case !exists:
			t.Errorf("cut at %d: authorized_keys is gone", n)
		case got != old && got != want:
			t.Errorf("cut at %d: authorized_keys is neither old nor new:\n%s", n, got)
		case err == nil && got != want:
			t.Errorf("cut at %d: the job succeeded but the file is the old one", n)
		case err != nil && got == want && !f.down:
			t.Errorf("cut at %d: the new content is in place but the job failed: %v", n, err)
		}
		if got == want && !announced.Load() {
			t.Errorf("cut at %d: the key was written without being announced (outcome %v)", n, err)
		}
		if fi, serr := os.Stat(h.AuthorizedKeysPath()); serr == nil {
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("cut at %d: mode %v", n, fi.Mode())
			}
		}
		if left, _ := filepath.Glob(filepath.Join(h.Home, ".ssh", ".authorized_keys.kps-*")); len(left) > 0 && !f.down {
			t.Errorf("cut at %d: temporary files left behind: %v", n, left)
		} else if len(left) > 0 {
			for _, l := range left {
				os.Remove(l) // the host stayed unreachable: nobody could clean up
			}
		}
		outcome := "success"
		if err != nil {
			outcome = kps.ErrorCode(err)
			if !strings.HasPrefix(outcome, "KPS.66") || kps.ErrorMessage(err) == "" {
				t.Errorf("cut at %d: error %v (code %s) is not a task outcome", n, err, outcome)
			}
			if f.down && reconnected && !strings.Contains(kps.ErrorMessage(err), "either the old or the new content") {
				t.Errorf("cut at %d with the host down: the message %q does not say the outcome is unknown", n, kps.ErrorMessage(err))
			}
		}
		if got == want {
			outcome += "/new"
		} else {
			outcome += "/old"
		}
		if reconnected {
			outcome += "/settled"
			if f.down {
				outcome = strings.Replace(outcome, "settled", "unreachable", 1)
			}
		}
		codes[outcome]++
	}
	var summary []string
	for k, v := range codes {
		summary = append(summary, fmt.Sprintf("%s×%d", k, v))
	}
	sort.Strings(summary)
	t.Logf("%d cuts over a %d-byte conversation (the write from byte %d): %s", len(faults), full, write0, strings.Join(summary, " "))
	if codes["success/new"] == 0 {
		t.Error("no run succeeded, not even the one past the end")
	}
	if codes["success/new/settled"] == 0 || codes["KPS.6605/old/settled"] == 0 {
		t.Error("no cut during the write was settled both ways (new content: success; old: KPS.6605)")
	}
}
