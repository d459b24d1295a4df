package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/openkps/kps/daemon"
	"github.com/openkps/kps/internal/sshdtest"
)

// logLine is one record of the service's log, its attributes as strings.
type logLine map[string]string

// parseLog splits a log in format ("json" or "text", slog's handlers) into records; a line that
// is not a record of that format fails the test.
func parseLog(t *testing.T, format, log string) []logLine {
	t.Helper()
	var out []logLine
	for _, raw := range strings.Split(strings.TrimSpace(log), "\n") {
		if raw == "" {
			continue
		}
		l, ok := logLine{}, false
		if format == "json" {
			var m map[string]any
			if ok = json.Unmarshal([]byte(raw), &m) == nil; ok {
				for k, v := range m {
					l[k] = logValue(v)
				}
			}
		} else {
			l, ok = parseLogfmt(raw)
		}
		if !ok || l["time"] == "" || l["level"] == "" || l["msg"] == "" {
			t.Fatalf("not a %s log record: %q", format, raw)
		}
		out = append(out, l)
	}
	return out
}

// logValue is a JSON value as the text handler would write it.
func logValue(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
}

// parseLogfmt reads a line of slog's text handler: key=value pairs, a value quoted (Go syntax)
// when it holds spaces, quotes or special characters.
func parseLogfmt(line string) (logLine, bool) {
	l := logLine{}
	for line != "" {
		key, rest, ok := strings.Cut(line, "=")
		if !ok || key == "" || strings.ContainsAny(key, " \"") {
			return nil, false
		}
		var value string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return nil, false
			}
			value, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			value, rest, _ = strings.Cut(rest, " ")
			rest = " " + rest
		}
		l[key] = value
		line = strings.TrimPrefix(rest, " ")
	}
	return l, true
}

// hexID is a request ID the service drew.
var hexID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestLogsOperatorsCanShip runs requests and binds against a service with the access log, in
// each log format: every request has one access line naming its route pattern (never its path),
// status, duration, bytes, request ID and client IP; a trusted proxy's X-Request-Id is kept and
// names the request everywhere it is logged, anyone else's is not; a 4xx is never logged as an
// internal error; and every line about a task names its task, server and project.
func TestLogsOperatorsCanShip(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			testLogs(t, format)
		})
	}
}

func testLogs(t *testing.T, format string) {
	var log lockedBuffer
	s := setupLogged(t, &log, withMetrics, func(c *daemon.Config) {
		c.LogFormat, c.AccessLog, c.LogLevel, c.TrustedProxies = format, true, "info", "127.0.0.1/32"
	})
	// send makes one request and returns its status, X-Request-Id and body length.
	send := func(method, path, body string, headers map[string]string) (int, string, int) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, s.base+path, rd)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := apiClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Request-Id"), len(raw)
	}
	token := map[string]string{"X-Auth-Token": s.token}
	list := "/v3/" + s.project + "/keypairs"

	// An ordinary request: an ID the service drew.
	status, plain, size := send("GET", list, "", token)
	if status != 200 || !hexID.MatchString(plain) {
		t.Fatalf("GET keypairs: %d, X-Request-Id %q", status, plain)
	}
	// Through the trusted proxy: its ID is kept, and the client is the one it names.
	proxied := map[string]string{"X-Auth-Token": s.token, "X-Request-Id": "lb-7f3a.1:trace=9", "X-Forwarded-For": "203.0.113.9"}
	if status, id, _ := send("GET", list, "", proxied); status != 200 || id != "lb-7f3a.1:trace=9" {
		t.Fatalf("through the proxy: %d, X-Request-Id %q, want the proxy's", status, id)
	}
	// A refusal through the proxy: the refusal's line carries the proxy's ID too.
	if status, id, _ := send("GET", list, "", map[string]string{"X-Auth-Token": "forged", "X-Request-Id": "lb-refused-1"}); status != 401 || id != "lb-refused-1" {
		t.Fatalf("refused through the proxy: %d, X-Request-Id %q", status, id)
	}
	// An ID that is not one is replaced: it could break a line or carry anything.
	for _, bad := range []string{"two words", strings.Repeat("a", 129), `quote"d`, "semi;colon"} {
		if _, id, _ := send("GET", list, "", map[string]string{"X-Auth-Token": s.token, "X-Request-Id": bad}); !hexID.MatchString(id) {
			t.Errorf("X-Request-Id %q from the proxy answered with %q, want one the service drew", bad, id)
		}
	}

	// Requests the API refuses with a 4xx, each of another kind.
	fourXX := []struct {
		method, path, body string
		status             int
	}{
		{"GET", "/v3/" + s.project + "/nothing-here", "", 404},
		{"GET", "/nothing-here", "", 404},
		{"PATCH", list, "{}", 405},
		{"POST", list, "{", 400},
		{"POST", list, `{"keypair":{"name":"x y"}}`, 400},
		{"GET", list + "/no-such-key", "", 404},
		{"POST", list, strings.Repeat(" ", 2<<20), 413},
		{"GET", "/compute/v2.1/" + s.project + "/os-keypairs/no-such-key", "", 404},
		{"POST", "/v3/auth/tokens", `{"auth":{}}`, 400},
	}
	for _, r := range fourXX {
		if status, _, _ := send(r.method, r.path, r.body, token); status != r.status {
			t.Errorf("%s %s: %d, want %d", r.method, r.path, status, r.status)
		}
	}
	s.must(200, "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "logged"}})
	s.wantError(409, "KPS.6301", "POST", "/keypairs", map[string]any{"keypair": map[string]any{"name": "logged"}})

	// A bind that succeeds on a real sshd and one that fails.
	h := sshdtest.Start(t, sshdtest.Options{})
	s.addHost("logged-host", h, map[string]any{"credential": map[string]any{"type": "password", "key": h.Password}})
	s.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "logged-closed", "address": "127.0.0.1",
		"port": closedPort(t), "credential": map[string]any{"type": "password", "key": "x"}}})
	for server, want := range map[string]string{"logged-host": "SUCCESS_RESET", "logged-closed": "FAILED_RESET"} {
		id := str(s.must(200, "POST", "/keypairs/associate", map[string]any{"keypair_name": "logged", "server": map[string]any{"id": server}})["task_id"])
		if st := s.waitTask(id); st != want {
			t.Fatalf("bind on %s: %s, want %s", server, st, want)
		}
	}

	lines := parseLog(t, format, log.String())
	access := map[string][]logLine{} // request ID → access lines
	for _, l := range lines {
		if l["msg"] != "request" {
			continue
		}
		for _, k := range []string{"method", "route", "status", "duration", "bytes", "request_id", "client_ip", "api"} {
			if _, ok := l[k]; !ok {
				t.Errorf("access line without %s: %v", k, l)
			}
		}
		if strings.Contains(l["route"], s.project) || strings.Contains(l["route"], "no-such-key") {
			t.Errorf("access line names a path, not a route pattern: %v", l)
		}
		access[l["request_id"]] = append(access[l["request_id"]], l)
	}
	want := func(id string, fields map[string]string) {
		t.Helper()
		if len(access[id]) != 1 {
			t.Fatalf("request %s has %d access lines, want 1: %v", id, len(access[id]), access[id])
		}
		for k, v := range fields {
			if got := access[id][0][k]; got != v {
				t.Errorf("request %s: access line %s=%q, want %q: %v", id, k, got, v, access[id][0])
			}
		}
	}
	want(plain, map[string]string{"method": "GET", "route": "GET /v3/{project_id}/keypairs", "status": "200",
		"bytes": strconv.Itoa(size), "client_ip": "127.0.0.1", "api": "kps"})
	want("lb-7f3a.1:trace=9", map[string]string{"status": "200", "client_ip": "203.0.113.9"})
	want("lb-refused-1", map[string]string{"status": "401", "route": "GET /v3/{project_id}/keypairs"})
	refusalLogged := false
	for _, l := range lines {
		refusalLogged = refusalLogged || l["msg"] == "authentication refused" && l["request_id"] == "lb-refused-1"
	}
	if !refusalLogged {
		t.Error("the refusal's log line does not carry the proxy's request ID")
	}

	for _, l := range lines {
		// A 4xx is the caller's mistake: never an internal error, never an ERROR.
		if l["msg"] == "internal error" || l["level"] == "ERROR" {
			t.Errorf("logged as an error: %v", l)
		}
		// A line about a task names its task, server and project.
		if l["task_id"] != "" && (l["server_id"] == "" || l["project_id"] != s.project) {
			t.Errorf("a task's line without its server or project: %v", l)
		}
	}
	for _, msg := range []string{"task succeeded", "task failed", "host task done", "host task failed"} {
		found := false
		for _, l := range lines {
			found = found || l["msg"] == msg && l["task_id"] != ""
		}
		if !found {
			t.Errorf("no %q line", msg)
		}
	}

	// Without trusted proxies, a client's X-Request-Id is its own business: not the ID.
	other := setup(t)
	req, _ := http.NewRequest("GET", other.base+"/healthz", nil)
	req.Header.Set("X-Request-Id", "spoofed-request-id")
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if id := resp.Header.Get("X-Request-Id"); !hexID.MatchString(id) {
		t.Errorf("a client that is no proxy chose its request ID: %q", id)
	}
}
