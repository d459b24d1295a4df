package api

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
)

// served is one request as Metrics.HTTPRequest saw it.
type served struct {
	family, route string
	status        int
}

// countingMetrics keeps what the Edge and the Authenticator record.
type countingMetrics struct {
	mu       sync.Mutex
	requests []served
	reasons  []string
}

func (m *countingMetrics) HTTPRequest(family, route string, status int, _ time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests = append(m.requests, served{family, route, status})
}

func (m *countingMetrics) AuthFailure(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reasons = append(m.reasons, reason)
}

// TestEdgeRecordsTheRoutePattern: the Edge records the family a router names and the pattern
// of the innermost Serve (a family that routes again on a mux of its own names its own route),
// "" when no route matched, the status and the bytes; the access line names the pattern, never
// the path.
func TestEdgeRecordsTheRoutePattern(t *testing.T) {
	inner := http.NewServeMux()
	inner.HandleFunc("GET /tree/{project}/items/{name}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte("12345"))
	})
	outer := http.NewServeMux()
	outer.Handle("/tree/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Serve(inner, w, r, func(w http.ResponseWriter, r *http.Request, err error) { w.WriteHeader(HTTPStatus(kps.ErrorCode(err))) })
	}))
	outer.HandleFunc("GET /plain", func(w http.ResponseWriter, r *http.Request) {})
	family := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SetFamily(r, "nova")
		Serve(outer, w, r, func(w http.ResponseWriter, r *http.Request, err error) { w.WriteHeader(HTTPStatus(kps.ErrorCode(err))) })
	})
	var log bytes.Buffer
	m := &countingMetrics{}
	h := (&Edge{Family: "unset", Metrics: m, Access: slog.New(slog.NewJSONHandler(&log, nil))}).Handler(family)

	for _, path := range []string{"/tree/p1/items/secret-name", "/plain", "/tree/p1/nothing", "/elsewhere"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
	}
	want := []served{{"nova", "GET /tree/{project}/items/{name}", 201}, {"nova", "GET /plain", 200}, {"nova", "", 404}, {"nova", "", 404}}
	if len(m.requests) != len(want) {
		t.Fatalf("recorded %v, want %v", m.requests, want)
	}
	for i := range want {
		if m.requests[i] != want[i] {
			t.Errorf("request %d recorded as %+v, want %+v", i, m.requests[i], want[i])
		}
	}
	var first map[string]any
	if err := json.Unmarshal(bytes.SplitN(log.Bytes(), []byte("\n"), 2)[0], &first); err != nil {
		t.Fatal(err)
	}
	if first["msg"] != "request" || first["route"] != "GET /tree/{project}/items/{name}" || first["status"] != float64(201) ||
		first["bytes"] != float64(5) || first["api"] != "nova" || first["method"] != "GET" || first["client_ip"] != "192.0.2.1" {
		t.Errorf("access line %v", first)
	}
	if strings.Contains(log.String(), "secret-name") || strings.Contains(log.String(), "p1") {
		t.Errorf("the access log names a path: %s", log.String())
	}
}

// TestEdgeRequestID: an ID the Edge draws, or a trusted proxy's well-formed one; never a
// client's; an in-process call made while serving a request (the console's) shares its ID.
func TestEdgeRequestID(t *testing.T) {
	proxies, _ := ParseTrustedProxies("10.0.0.0/8")
	var seen string
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = RequestID(r) })
	edge := &Edge{Proxies: proxies}
	for _, c := range []struct {
		peer, id string
		kept     bool
	}{
		{"10.1.1.1:1", "3f2a9c1e-0b7d-4c55-9e1a-2b3c4d5e6f70", true},
		{"10.1.1.1:1", "Root=1-67891233-abcdef012345678912345678", true},
		{"10.1.1.1:1", "has space", false},
		{"10.1.1.1:1", "line\rbreak", false},
		{"10.1.1.1:1", strings.Repeat("x", 129), false},
		{"10.1.1.1:1", strings.Repeat("x", 128), true},
		{"203.0.113.1:1", "chosen-by-the-client", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		r.Header.Set("X-Request-Id", c.id)
		w := httptest.NewRecorder()
		edge.Handler(echo).ServeHTTP(w, r)
		got := w.Header().Get("X-Request-Id")
		if got != seen {
			t.Errorf("answered %q, handlers saw %q", got, seen)
		}
		if kept := got == c.id; kept != c.kept {
			t.Errorf("from %s, X-Request-Id %q: answered %q", c.peer, c.id, got)
		}
		if !c.kept && (len(got) != 32 || strings.Trim(got, "0123456789abcdef") != "") {
			t.Errorf("drawn ID %q is not 32 hex characters", got)
		}
	}

	// The console calls the API in process with the context of the page's request.
	var page, call string
	api := edge.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { call = RequestID(r) }))
	console := (&Edge{Family: "console"}).Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page = RequestID(r)
		api.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v3/p/keypairs", nil).WithContext(r.Context()))
	}))
	console.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/console/", nil))
	if page == "" || call != page {
		t.Errorf("the page's ID %q, its API call's %q", page, call)
	}
}
