package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/openkps/kps/api"
	"github.com/openkps/kps/metrics"
	"github.com/openkps/kps/sshhost"
	"github.com/openkps/kps/tasks"
)

// The registry is handed to each part as the interface that part declares; a nil registry
// (--metrics=false) must reach them as a nil interface, which they read as "record nothing",
// not as an interface holding a nil pointer.

func taskMetrics(r *metrics.Registry) tasks.Metrics {
	if r == nil {
		return nil
	}
	return r
}

func sshMetrics(r *metrics.Registry) sshhost.Metrics {
	if r == nil {
		return nil
	}
	return r
}

func apiMetrics(r *metrics.Registry) api.Metrics {
	if r == nil {
		return nil
	}
	return r
}

// metricsServer serves GET /metrics alone on --metrics-listen.
type metricsServer struct {
	http     *http.Server
	listener net.Listener
	served   chan error
}

// serveMetrics starts serving h at GET /metrics on addr, in plain HTTP: the listener is meant
// for an internal network that only the monitoring reaches (docs/operations.md). Its requests
// get an ID and, with access, an access line (family "metrics"); they are not counted.
func serveMetrics(addr string, h http.Handler, log, access *slog.Logger) (*metricsServer, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	edge := &api.Edge{Family: "metrics", Access: access}
	s := &metricsServer{listener: l, served: make(chan error, 1), http: &http.Server{Handler: edge.Handler(mux),
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second,
		IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}}
	go func() { s.served <- s.http.Serve(l) }()
	return s, nil
}

func (s *metricsServer) close(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if serr := <-s.served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// MetricsAddr is the address of the --metrics-listen listener; "" without one.
func (m *Main) MetricsAddr() string {
	if m.metrics == nil {
		return ""
	}
	return m.metrics.listener.Addr().String()
}

// metricsWhere says where the metrics are served, for the start-up line.
func metricsWhere(cfg *Config, s *metricsServer) string {
	switch {
	case !cfg.Metrics:
		return "off"
	case s != nil:
		return "http://" + s.listener.Addr().String() + "/metrics"
	default:
		return "/metrics on the main listener"
	}
}
