// Package daemon is `kps serve`: its settings (Config, one flag and one KPS_* variable each),
// and Main, the running service, which opens the store, bootstraps identity, starts the task
// workers and serves the HTTP API until it is closed. It is the only package that knows every
// implementation and wires them together: it may import the domain and every package of the
// service (api, iam, store, tasks, sshhost, secrets, docs), and nothing imports it but the
// binary (cmd/kps, which plugs Command into the command tree of package cli) and the tests
// that start the real service in process (e2e, interop).
//
// Main also serves tests and embedders: Run on port 0 with a temporary data directory starts
// the real thing, Close stops it, and Store, Sealer and HTTPServer give what a test arranges
// or inspects beyond the API.
package daemon
