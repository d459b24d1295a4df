package api

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"
)

// Metrics records what the API serves (package metrics implements it).
type Metrics interface {
	// HTTPRequest records one request served: the family that served it (kps, identity, nova,
	// console), the pattern of the route that matched ("" when none did), the status and the
	// time from the request's arrival at the Edge to the end of its answer.
	HTTPRequest(family, route string, status int, took time.Duration)
	// AuthFailure counts a refused authentication or authorization by its reason key, the one
	// its log line carries (Authenticator.LogRefusal).
	AuthFailure(reason string)
}

// Edge is the first handler every request meets: it gives the request its ID, returned as
// X-Request-Id and put on the request's context for the log lines of everything below
// (RequestID); and, when asked, it records the request's metrics and writes its access line
// once the answer is written. The family and the route that served the request are recorded on
// the way (SetFamily, Serve), so that both name the ServeMux pattern, never the path: a path
// carries project and key pair names, which would make every line and label unique.
type Edge struct {
	// Family names the API of the requests whose family is not set on the way (SetFamily): the
	// console's pages.
	Family string
	// Proxies are the trusted proxies (router.Config.TrustedProxies): a request that arrives
	// through one keeps the X-Request-Id that proxy sent, and its access line names the client
	// the proxy names (ClientIP).
	Proxies Proxies
	// Metrics records every request; nil records nothing.
	Metrics Metrics
	// Access, when set, receives one INFO line per request: method, route pattern, status,
	// duration, bytes written, request ID, client IP and family. Never the path, the query or
	// a header: they may carry names and secrets (auth.md §12.5).
	Access *slog.Logger
}

// Handler returns next behind the edge.
func (e *Edge) Handler(next http.Handler) http.Handler {
	observe := e.Metrics != nil || e.Access != nil
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &requestInfo{id: e.requestID(r), family: e.Family}
		w.Header().Set("X-Request-Id", info.id)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, info))
		if !observe {
			next.ServeHTTP(w, r)
			return
		}
		rec := &recorder{ResponseWriter: w}
		// Deferred, so that a request whose handler panicked (an aborted answer) is counted too.
		defer func() { e.observe(r, info, rec, time.Since(start)) }()
		next.ServeHTTP(rec, r)
	})
}

// observe records a served request.
func (e *Edge) observe(r *http.Request, info *requestInfo, rec *recorder, took time.Duration) {
	route := info.route
	if !info.routed {
		// A handler that does not route through Serve (the console's pages) has had its
		// ServeMux set the pattern on the request the Edge passed on.
		route = r.Pattern
	}
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	if e.Metrics != nil {
		e.Metrics.HTTPRequest(info.family, route, status, took)
	}
	if e.Access != nil {
		e.Access.LogAttrs(r.Context(), slog.LevelInfo, "request", slog.String("method", r.Method), slog.String("route", route),
			slog.Int("status", status), slog.Duration("duration", took), slog.Int64("bytes", rec.bytes),
			slog.String("request_id", info.id), slog.String("client_ip", e.Proxies.ClientIP(r)), slog.String("api", info.family))
	}
}

// requestID is the ID of r: the X-Request-Id a trusted proxy sent when it is a well-formed one;
// else the ID of the request r is made within (an in-process call of the console, which thus
// shares the ID of the page that made it); else a new one.
func (e *Edge) requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(e.Proxies) > 0 && validRequestID(id) && e.Proxies.peerTrusted(r) {
		return id
	}
	if outer, ok := r.Context().Value(requestIDKey{}).(*requestInfo); ok {
		return outer.id
	}
	return newRequestID()
}

// peerTrusted reports whether r's TCP peer is one of the proxies.
func (ps Proxies) peerTrusted(r *http.Request) bool {
	peer := r.RemoteAddr
	if host, _, err := net.SplitHostPort(peer); err == nil {
		peer = host
	}
	addr, err := netip.ParseAddr(peer)
	return err == nil && ps.trusted(addr)
}

// maxRequestID bounds a request ID taken from a proxy.
const maxRequestID = 128

// validRequestID accepts what proxies send as request IDs (UUIDs, hex, AWS and Zipkin style
// IDs): 1–128 letters, digits and - _ . : = + / @. Nothing else, so that an ID can neither
// break a log line nor carry anything larger than an ID.
func validRequestID(id string) bool {
	if len(id) == 0 || len(id) > maxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '=', c == '+', c == '/', c == '@':
		default:
			return false
		}
	}
	return true
}

// requestInfo is what the Edge knows of a request and what is recorded on its way: its ID, and
// the family and route pattern that served it.
type requestInfo struct {
	id     string
	family string
	route  string
	routed bool // route was recorded by Serve
}

// SetFamily names the API family serving r (api/router), for its metrics and access line.
func SetFamily(r *http.Request, family string) {
	if info, ok := r.Context().Value(requestIDKey{}).(*requestInfo); ok {
		info.family = family
	}
}

// setRoute records the pattern that matched r, "" for none. The innermost Serve wins: a family
// whose handler routes again on a ServeMux of its own (Nova's trees) names its own route.
func setRoute(r *http.Request, pattern string) {
	if info, ok := r.Context().Value(requestIDKey{}).(*requestInfo); ok {
		info.route, info.routed = pattern, true
	}
}

// recorder is the ResponseWriter the Edge hands on when it observes: it keeps the status and
// counts the bytes of the body. Unwrap lets http.ResponseController reach the connection's
// writer (flushes, deadlines).
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *recorder) WriteHeader(status int) {
	if w.status == 0 && status >= 200 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
