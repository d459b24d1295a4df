package sshhost

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/sshdtest"
	"golang.org/x/crypto/ssh"
)

// hostProcesses sorts what a traced sshd started into its own processes (the connection's
// re-executed sshd and the ones it forks) and the session's: the programs the user's shell
// ran.
func hostProcesses(procs []sshdtest.Process) (own int, session []string) {
	for _, p := range procs {
		switch prog := p.Program(); {
		case prog == "" || filepath.Base(prog) == "sshd":
			own++
		default:
			session = append(session, filepath.Base(prog))
		}
	}
	sort.Strings(session)
	return own, session
}

// TestProcessesPerTask counts the processes a REPLACE starts on its host (strace -f on the
// host's sshd; docs/BENCHMARKS.md states the figures): with the file transfer subsystem, the
// session runs sftp-server through the user's login shell and nothing else, no more processes
// than the benchmark's floor, whose one command (bench/fleet.go) runs sh and mkdir; without
// the subsystem, the task script's (about ten). The hosts of a fleet pay these processes per
// task, on CPUs that are often busy.
func TestProcessesPerTask(t *testing.T) {
	t.Parallel()
	key := newKey(t, "k")
	old := newKey(t, "old")
	count := func(t *testing.T, opt sshdtest.Options, act func(h *sshdtest.Host, e *Executor, job kps.HostJob)) (int, []string) {
		h, e, job, logs := setupHost(t, opt)
		h.WriteAuthorizedKeys(t, "# hand-made\n"+old.public+"\n")
		job.InstallKey, job.RemoveKeys = key.public, []string{old.public}
		stop := h.TraceProcesses(t)
		act(h, e, job)
		quiesce(t, h)
		own, session := hostProcesses(stop())
		t.Logf("%d processes: %d of sshd, %d of the session %v", own+len(session), own, len(session), session)
		if got, _ := h.AuthorizedKeys(t); !strings.Contains(got, blob64(key.public)) || strings.Contains(got, blob64(old.public)) {
			t.Fatalf("authorized_keys = %q", got)
		}
		_ = logs
		return own, session
	}
	bind := func(h *sshdtest.Host, e *Executor, job kps.HostJob) { mustExecute(t, e, job) }

	var floorOwn, floorSession int
	t.Run("floor", func(t *testing.T) {
		own, session := count(t, sshdtest.Options{}, func(h *sshdtest.Host, _ *Executor, _ kps.HostJob) {
			c, err := h.Dial(ssh.Password(h.Password))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// bench/fleet.go floorBind's command, and the old key removed by hand for the check.
			if err := s.Run("umask 077 && mkdir -p .ssh && printf '%s\\n' '" + key.public + "' > .ssh/authorized_keys"); err != nil {
				t.Fatal(err)
			}
		})
		floorOwn, floorSession = own, len(session)
	})
	t.Run("sftp", func(t *testing.T) {
		own, session := count(t, sshdtest.Options{}, bind)
		// The login shell runs the subsystem's command: bash executes it in its own process,
		// dash (the test users' /bin/sh) forks it.
		server, ran, others := filepath.Base(sshdtest.SFTPServer()), false, 0
		for _, p := range session {
			switch p {
			case server:
				ran = true
			case "sh", "dash", "bash":
			default:
				others++
			}
		}
		if !ran || others > 0 || len(session) > 2 {
			t.Errorf("the session ran %v, want %s through the login shell and nothing else", session, server)
		}
		if floorOwn > 0 && own+len(session) > floorOwn+floorSession {
			t.Errorf("%d processes, more than the floor's %d", own+len(session), floorOwn+floorSession)
		}
	})
	t.Run("script", func(t *testing.T) {
		_, session := count(t, sshdtest.Options{NoSFTP: true}, bind)
		if len(session) < 5 {
			t.Errorf("the session ran %v: the task script starts more (is it still the script?)", session)
		}
	})
}

// TestHostsWithoutAUsableSubsystemStillBind: a host that offers no file transfer subsystem,
// one whose subsystem does not speak the protocol (a command that prints), and one the
// subsystem cannot serve as the script would (the home directory is gone, so the session does
// not start there) get the task script, with its outcomes: the first two bind, the third fails
// as the script says (KPS.6608).
func TestHostsWithoutAUsableSubsystemStillBind(t *testing.T) {
	for _, c := range []struct {
		name    string
		opt     sshdtest.Options
		arrange func(t *testing.T, h *sshdtest.Host)
		code    string
	}{
		{"no subsystem", sshdtest.Options{NoSFTP: true}, nil, ""},
		{"not the protocol", sshdtest.Options{NoSFTP: true, Config: "Subsystem sftp /bin/echo this is not sftp\n"}, nil, ""},
		{"home gone", sshdtest.Options{}, func(t *testing.T, h *sshdtest.Host) {
			if err := os.RemoveAll(h.Home); err != nil {
				t.Fatal(err)
			}
		}, kps.TaskNoUser},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, e, job, logs := setup(t, c.opt)
			if c.arrange != nil {
				c.arrange(t, h)
			}
			key := newKey(t, "k")
			job.InstallKey = key.public
			_, err := execute(t, e, job)
			if c.code != "" {
				wantCode(t, err, c.code, h)
				logs.record(t, "using the task script")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := logs.record(t, "host task done")["script"]; got != true {
				t.Errorf("script = %v, want true", got)
			}
			if !h.KeyLoginWorks(t, key.signer) {
				t.Error("the installed key does not log in")
			}
		})
	}
}
