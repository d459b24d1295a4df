package e2e

import (
	"bytes"
	"context"
	"database/sql"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openkps/kps/internal/pgtest"
)

// TestDatabaseFile: `kps serve --database-file FILE` reads the PostgreSQL URL from a file, so its
// password shows neither on the command line (ps) nor in the environment nor in the log; a file
// that group or others may write is refused, one they may read is used with a warning, and no
// refusal quotes the file.
func TestDatabaseFile(t *testing.T) {
	t.Parallel()
	const secret = "pw-from-the-database-file"
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode) // the umask may have taken bits away
		return p
	}
	serve := func(args ...string) (int, string) {
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		code := run(ctx, append([]string{"serve", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, args...),
			console{nil, &out, &out, func(string) string { return "" }})
		return code, out.String()
	}
	bogus := "postgres://kps:" + secret + "@127.0.0.1:1/kps"
	for _, tt := range []struct {
		name, content string
		mode          os.FileMode
		args          []string
		want          string
	}{
		{"world-writable", bogus, 0o666, nil, "may be written by group or others (mode 0666)"},
		{"group-writable", bogus, 0o620, nil, "may be written by group or others (mode 0620)"},
		{"not-a-url", "sqlite://" + secret, 0o600, nil, "must hold a postgres:// or postgresql:// URL"},
		{"two-lines", bogus + "\n" + bogus + "\n", 0o600, nil, "must hold one line"},
		{"empty", "\n", 0o400, nil, "must hold a postgres:// or postgresql:// URL"},
		{"with-database", bogus, 0o600, []string{"--database", "postgres://x@127.0.0.1:1/x"}, "exclude each other"},
	} {
		p := write(tt.name, tt.content, tt.mode)
		code, out := serve(append([]string{"--database-file", p}, tt.args...)...)
		if code != 2 || !strings.Contains(out, tt.want) || strings.Contains(out, secret) {
			t.Errorf("%s: exit %d, output %q; want 2 and %q, without the file's content", tt.name, code, out, tt.want)
		}
	}
	if code, out := serve("--database-file", filepath.Join(dir, "missing")); code != 2 || !strings.Contains(out, "--database-file") {
		t.Errorf("missing file: exit %d %q", code, out)
	}

	// The real thing: the built binary on a PostgreSQL schema of its own, its URL with a password
	// only in the file (the test server trusts loopback and ignores it).
	u, err := url.Parse(pgtest.Schema(t))
	if err != nil {
		t.Fatal(err)
	}
	password := secret
	if pw, ok := u.User.Password(); ok {
		password = pw
	} else {
		u.User = url.UserPassword(u.User.Username(), secret)
	}
	file := write("database-url", u.String()+"\n", 0o640) // readable by the group: used, with a warning
	var log lockedBuffer
	cmd := exec.Command(kpsBinary(t), "serve", "--listen", "127.0.0.1:0", "--log-level", "info")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "KPS_DATA_DIR=" + t.TempDir(), "KPS_ADMIN_PASSWORD=database-file-password",
		"KPS_DATABASE_FILE=" + file}
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	serving := regexp.MustCompile(`msg="kps serving" listen=(\S+) .*database=postgres`)
	deadline := time.Now().Add(30 * time.Second)
	var m []string
	for m = serving.FindStringSubmatch(log.String()); m == nil; m = serving.FindStringSubmatch(log.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("kps serve did not start on PostgreSQL: %s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := &service{t: t, base: "http://" + m[1]}
	s.login("database-file-password")
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "in-postgres"}})
	for _, f := range []string{"cmdline", "environ"} {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(password)) {
			t.Errorf("the database password is in /proc/<pid>/%s", f)
		}
	}
	if !strings.Contains(log.String(), "the database file may be read by group or others") || strings.Contains(log.String(), password) {
		t.Errorf("log without the warning on mode 0640, or with the password: %s", log.String())
	}
	// The key pair is in the schema the file names.
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(context.Background(), "SELECT count(*) FROM keypairs WHERE name = 'in-postgres'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("key pair in the file's database: %d %v", n, err)
	}
}
