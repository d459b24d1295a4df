package api

import (
	"context"
	"net/http"
	"time"

	"github.com/openkps/kps"
)

// readinessTimeout bounds the database ping of /readyz: a load balancer polls often, and a
// database that hangs must read as "not ready" quickly, not as a hung check.
const readinessTimeout = 2 * time.Second

// pinger is what /readyz needs of the store; a store without it is ready while it serves.
type pinger interface {
	Ping(ctx context.Context) error
}

// healthz is GET /healthz, the liveness check: 200 while the process serves HTTP. It touches
// nothing else, so a replica whose database is down is not restarted for it.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz is GET /readyz, the readiness check: 200 when the database answers a ping within
// readinessTimeout, else 503 KPS.6502, so that a load balancer sends requests elsewhere.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if p, ok := s.store.(pinger); ok {
		ctx, cancel := context.WithTimeout(r.Context(), readinessTimeout)
		defer cancel()
		if err := p.Ping(ctx); err != nil {
			s.log.Warn("not ready: the database does not answer", "err", err)
			s.renderError(w, r, kps.Errorf(kps.ErrUnavailable, "The database is unreachable; retry later."))
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
