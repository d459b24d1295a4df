package sshhost

import (
	"context"
	"fmt"
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

// cutProxy relays TCP connections to a target and cuts each one after limit bytes have passed
// (both directions counted); a negative limit never cuts. Odd limits reset the connection,
// even ones close it cleanly, so both kinds of loss are exercised.
type cutProxy struct {
	ln     net.Listener
	target string
	limit  atomic.Int64
	last   atomic.Int64 // bytes relayed by the last connection that ended
	wg     sync.WaitGroup
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	p.limit.Store(-1)
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
	limit := p.limit.Load()
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
				if limit >= 0 {
					after := total.Add(int64(n))
					if after > limit {
						if allowed := int64(n) - (after - limit); allowed > 0 {
							dst.Write(buf[:allowed])
						}
						return
					}
				} else {
					total.Add(int64(n))
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
// spread over the whole conversation (handshake, authentication, the read session, the write
// session and the exit status). After every cut authorized_keys is exactly the old or exactly
// the new content, with mode 0600 and the user as owner, no temporary file is left behind, and
// the job either succeeded (then the file is new) or failed with a task outcome code.
func TestNetworkFaultsMidTask(t *testing.T) {
	h, e, job, _ := setup(t, sshdtest.Options{})
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
	e.ConnectTimeout = 5 * time.Second

	// The size of a whole conversation through the proxy.
	h.WriteAuthorizedKeys(t, old)
	mustExecute(t, e, job)
	quiesce(t, h)
	full := proxy.last.Load()
	if full < 1000 {
		t.Fatalf("a whole job relayed only %d bytes", full)
	}

	// N from 0 through the version exchange, 32 points spread over the whole conversation, 32
	// more over its last 40% (the read and write sessions and the exit status), and one past
	// the end (no cut at all).
	var limits []int64
	for n := int64(0); n <= 64; n += 16 {
		limits = append(limits, n)
	}
	for i := int64(1); i <= 32; i++ {
		limits = append(limits, 64+(full-64)*i/32-int64(i%3))
	}
	for i := int64(0); i < 32; i++ {
		limits = append(limits, full*6/10+full*4/10*i/32+int64(i%5))
	}
	limits = append(limits, full+1000)

	codes := map[string]int{}
	for _, n := range limits {
		h.WriteAuthorizedKeys(t, old)
		proxy.limit.Store(n)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		_, err := e.Execute(ctx, job)
		cancel()
		quiesce(t, h)

		got, exists := h.AuthorizedKeys(t)
		switch {
		case !exists:
			t.Errorf("cut at %d: authorized_keys is gone", n)
		case got != old && got != want:
			t.Errorf("cut at %d: authorized_keys is neither old nor new:\n%s", n, got)
		case err == nil && got != want:
			t.Errorf("cut at %d: the job succeeded but the file is the old one", n)
		}
		if fi, serr := os.Stat(h.AuthorizedKeysPath()); serr == nil {
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("cut at %d: mode %v", n, fi.Mode())
			}
		}
		if left, _ := filepath.Glob(filepath.Join(h.Home, ".ssh", ".authorized_keys.kps-*")); len(left) > 0 {
			t.Errorf("cut at %d: temporary files left behind: %v", n, left)
		}
		outcome := "success"
		if err != nil {
			outcome = kps.ErrorCode(err)
			if !strings.HasPrefix(outcome, "KPS.66") || kps.ErrorMessage(err) == "" {
				t.Errorf("cut at %d: error %v (code %s) is not a task outcome", n, err, outcome)
			}
		}
		if got == want {
			outcome += "/new"
		} else {
			outcome += "/old"
		}
		codes[outcome]++
	}
	var summary []string
	for k, v := range codes {
		summary = append(summary, fmt.Sprintf("%s×%d", k, v))
	}
	sort.Strings(summary)
	t.Logf("%d cuts over a %d-byte conversation: %s", len(limits), full, strings.Join(summary, " "))
	if codes["success/new"] == 0 {
		t.Error("no run succeeded, not even the one past the end")
	}
	if codes["success/old"] > 0 {
		t.Error("a job succeeded without writing")
	}
}
