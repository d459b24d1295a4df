// Package e2e holds the end-to-end suites: tests that start the real service and talk to it
// over TCP as clients do. Most start it in process (setup: daemon.Main on a free port with a
// fresh data directory and a SQLite file, or PostgreSQL with KPS_TEST_POSTGRES); the crash,
// chaos, replica, soak and attack tests run the binary itself (kpsBinary: `go build` of cmd/kps
// once per test process) and kill it when they mean to. The hosts are real sshd processes
// (internal/sshdtest) and, for what no honest sshd does, internal/hostilessh. The command
// line runs in process too (run: the command tree of package cli with daemon's `kps serve`).
//
// It has no code outside its tests. The tests may import anything in the module; nothing
// imports them. The long runs (`make chaos`, `make soak`) and the fuzz targets
// (FuzzRequestBodies, FuzzListQuery) live here too; docs/RELIABILITY.md describes them.
package e2e
