package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// postgres is a throwaway cluster of the Debian package's binaries, started the way .ci/run
// starts one: initdb into a scratch directory, loopback only, trust authentication, run as the
// postgres user when this process is root (PostgreSQL refuses to run as root).
type postgres struct {
	bin, dir string
	port     int
	dbs      int
}

func (b *bench) postgres(ctx context.Context) (*postgres, error) {
	if b.pg != nil || b.pgError != nil {
		return b.pg, b.pgError
	}
	b.pg, b.pgError = startPostgres(ctx, b)
	return b.pg, b.pgError
}

func startPostgres(ctx context.Context, b *bench) (*postgres, error) {
	bin, err := pgBin()
	if err != nil {
		return nil, err
	}
	p := &postgres{bin: bin, dir: b.scratch("postgres")}
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "-R", "postgres", p.dir).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("chown postgres %s: %v: %s", p.dir, err, out)
		}
		// The scratch directory above it is 0700 root: the postgres user must traverse it.
		os.Chmod(filepath.Dir(p.dir), 0o711)
	}
	b.logf("starting PostgreSQL (%s) in %s", bin, p.dir)
	// fsync off, as in CI: a disposable cluster whose durability nothing depends on.
	if out, err := p.run("initdb", "-D", filepath.Join(p.dir, "data"), "-U", "postgres", "-A", "trust", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	for attempt := 0; ; attempt++ {
		p.port = 20000 + rand.IntN(20000)
		out, err := p.run("pg_ctl", "-D", filepath.Join(p.dir, "data"), "-l", filepath.Join(p.dir, "server.log"), "-w", "-t", "60",
			"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off", p.port, p.dir), "start")
		if err == nil {
			break
		}
		if attempt == 4 {
			log, _ := os.ReadFile(filepath.Join(p.dir, "server.log"))
			return nil, fmt.Errorf("pg_ctl start: %v: %s\n%s", err, out, log)
		}
	}
	return p, nil
}

// run runs one of the cluster's programs, as the postgres user when root.
func (p *postgres) run(name string, args ...string) ([]byte, error) {
	path := filepath.Join(p.bin, name)
	if os.Geteuid() == 0 {
		args = append([]string{"-u", "postgres", "--", path}, args...)
		path = "runuser"
	}
	return exec.Command(path, args...).CombinedOutput()
}

func (p *postgres) url(db string) string {
	return "postgres://postgres@127.0.0.1:" + strconv.Itoa(p.port) + "/" + db + "?sslmode=disable"
}

// newDatabase creates an empty database for one kps serve and returns its URL.
func (p *postgres) newDatabase(ctx context.Context) (string, error) {
	admin, err := sql.Open("pgx", p.url("postgres"))
	if err != nil {
		return "", err
	}
	defer admin.Close()
	p.dbs++
	name := fmt.Sprintf("kpsbench%d", p.dbs)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	return p.url(name), nil
}

// Stop stops the cluster at once; its files go with the scratch directory.
func (p *postgres) Stop() {
	p.run("pg_ctl", "-D", filepath.Join(p.dir, "data"), "-m", "immediate", "stop")
}
