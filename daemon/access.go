package daemon

import (
	"net/http"

	"github.com/openkps/kps/secrets"
	"github.com/openkps/kps/store"
)

// What a test (package e2e, interop) or an embedder may reach of a running Main beyond its
// API. Each is nil before Run.

// Store is the database the service runs on: tests arrange with it what the API cannot
// (another domain, a user with a chosen role) and inspect what was stored.
func (m *Main) Store() *store.DB { return m.store }

// Sealer seals and opens the service's secrets under its master key ring.
func (m *Main) Sealer() *secrets.Sealer { return m.sealer }

// HTTPServer is the service's HTTP server, with the timeouts and limits it serves under.
func (m *Main) HTTPServer() *http.Server { return m.http }

// WaitRewrap waits until the passes that re-wrap secrets under the newest master key, which Run
// and ReloadKeys start in the background, have ended.
func (m *Main) WaitRewrap() { m.rewraps.Wait() }
