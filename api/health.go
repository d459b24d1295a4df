package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/openkps/kps"
)

// readinessTimeout bounds the database ping of /readyz: a load balancer polls often, and a
// database that hangs must read as "not ready" quickly, not as a hung check.
const readinessTimeout = 2 * time.Second

// Health serves the load balancers' checks (docs/deployment.md).
type Health struct {
	// Ping reports whether the database answers; nil: ready while the process serves.
	Ping func(ctx context.Context) error
	Log  *slog.Logger
	// Fail renders a refusal in the family's error body.
	Fail func(w http.ResponseWriter, r *http.Request, err error)
}

// Live is GET /healthz, the liveness check: 200 while the process serves HTTP. It touches
// nothing else, so a replica whose database is down is not restarted for it.
func (h *Health) Live(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Ready is GET /readyz, the readiness check: 200 when the database answers a ping within
// readinessTimeout, else 503 KPS.6502, so that a load balancer sends requests elsewhere.
func (h *Health) Ready(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if h.Ping != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readinessTimeout)
		defer cancel()
		if err := h.Ping(ctx); err != nil {
			h.Log.Warn("not ready: the database does not answer", "err", err)
			h.Fail(w, r, kps.Errorf(kps.ErrUnavailable, "The database is unreachable; retry later."))
			return
		}
	}
	WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
