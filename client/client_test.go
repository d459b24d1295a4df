package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/iam"
)

// TestErrorsAndAuth: the service's errors come back as *kps.Error; a request carries a token,
// or an AK/SK signature the service's own verifier accepts; typed bodies are what the API wants.
func TestErrorsAndAuth(t *testing.T) {
	t.Parallel()
	var seen atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen.Store(r.Header.Clone())
		switch r.URL.Path {
		case "/v3/p1/keypairs/associate":
			var b map[string]any
			json.Unmarshal(body, &b)
			srvObj := b["server"].(map[string]any)
			if b["keypair_name"] != "web" || srvObj["id"] != "web-01" || srvObj["keep_login_key"] != true ||
				srvObj["auth"].(map[string]any)["type"] != "keypair" || srvObj["port"] != float64(2222) {
				t.Errorf("associate body %s", body)
			}
			w.Write([]byte(`{"task_id":"t1","server_id":"web-01","status":"SUCCESS"}`))
		case "/v3/p1/servers/web-01":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(404)
			w.Write([]byte(`{"error_code":"KPS.6204","error_msg":"Server 'web-01' does not exist."}`))
		default:
			w.WriteHeader(502)
		}
	}))
	defer srv.Close()
	c := New(srv.URL+"/", time.Second)
	c.ProjectID, c.Token = "p1", "tok"
	s, err := c.Bind(context.Background(), Bind{KeyPairName: "web", ServerID: "web-01", Port: 2222, KeepLoginKey: true,
		Auth: &kps.Credential{Type: kps.CredentialKeyPair, Key: "k"}})
	if err != nil || !s.Accepted() || s.TaskID != "t1" {
		t.Fatalf("bind: %+v %v", s, err)
	}
	if h := seen.Load().(http.Header); h.Get("X-Auth-Token") != "tok" || h.Get("Content-Type") != "application/json;charset=UTF-8" {
		t.Fatalf("headers %v", h)
	}
	_, err = c.Server(context.Background(), "web-01")
	var ke *kps.Error
	if !errors.As(err, &ke) || ke.Code != "KPS.6204" || Code(err) != "KPS.6204" {
		t.Fatalf("404: %v", err)
	}
	if _, err := c.Task(context.Background(), "x"); err == nil || Code(err) != "" || !strings.Contains(err.Error(), "HTTP 502") {
		t.Fatalf("502 without a KPS body: %v", err)
	}

	c.Token, c.AccessKey, c.SecretKey = "", "AKEXAMPLE", "secret"
	c.Bind(context.Background(), Bind{KeyPairName: "web", ServerID: "web-01", Port: 2222, KeepLoginKey: true, Auth: &kps.Credential{Type: kps.CredentialKeyPair}})
	if h := seen.Load().(http.Header); h.Get("X-Auth-Token") != "" || !strings.HasPrefix(h.Get("Authorization"), iam.AlgorithmSDKHMACSHA256+" Access=AKEXAMPLE") {
		t.Fatalf("signed headers %v", h)
	}
}

// TestTimeoutsAndUnreachable: a service that does not answer in time, or at all, is an
// UnreachableError that says so, and a cancelled context is the context's error.
func TestTimeoutsAndUnreachable(t *testing.T) {
	t.Parallel()
	stall := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-stall }))
	defer srv.Close()
	defer close(stall)
	c := New(srv.URL, 200*time.Millisecond)
	c.ProjectID = "p"
	start := time.Now()
	_, err := c.Task(context.Background(), "t")
	var ue *UnreachableError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "did not answer in time") || time.Since(start) > 5*time.Second {
		t.Fatalf("stalled service: %v after %v", err, time.Since(start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if _, err := New(srv.URL, time.Minute).Task(ctx, "t"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	if _, err := New("http://"+addr, time.Second).Task(context.Background(), "t"); !errors.As(err, &ue) || !strings.Contains(err.Error(), "cannot reach the service at http://"+addr) {
		t.Fatalf("closed port: %v", err)
	}
}

// TestFailedTasksPages: the iterator reads pages as the caller goes on and stops with it.
func TestFailedTasksPages(t *testing.T) {
	t.Parallel()
	var requests atomic.Int32
	const total = 2500
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
		page := TaskPage{Total: total, Tasks: []TaskEntry{}}
		for i := offset; i < min(offset+limit, total); i++ {
			page.Tasks = append(page.Tasks, TaskEntry{TaskID: strconv.Itoa(i), Status: "FAILED_RESET"})
		}
		json.NewEncoder(w).Encode(page)
	}))
	defer srv.Close()
	c := New(srv.URL, time.Second)
	c.ProjectID = "p"
	n := 0
	for _, err := range c.FailedTasks(context.Background(), 1000) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != total || requests.Load() != 3 {
		t.Fatalf("%d tasks in %d requests", n, requests.Load())
	}
	requests.Store(0)
	for e := range c.FailedTasks(context.Background(), 1000) {
		if e.TaskID == "5" {
			break
		}
	}
	if requests.Load() != 1 {
		t.Fatalf("stopping early read %d pages", requests.Load())
	}
	if op := (TaskEntry{Status: "FAILED_REPLACE"}).Operation(); op != kps.OpReplace {
		t.Fatalf("operation %q", op)
	}
	if !Ended("SUCCESS_UNBIND") || Ended("RUNNING_RESET") || StatusPhase("READY_RESET") != kps.PhaseReady {
		t.Fatal("status helpers")
	}
}

// TestServerSpecJSON: only the members set are sent; a cleared credential is null.
func TestServerSpecJSON(t *testing.T) {
	t.Parallel()
	port := 2222
	keys := []string{}
	for _, c := range []struct {
		spec ServerSpec
		want string
	}{
		{ServerSpec{ID: "a", Port: &port}, `{"id":"a","port":2222}`},
		{ServerSpec{HostKeys: &keys, ClearCredential: true}, `{"host_keys":[],"credential":null}`},
		{ServerSpec{Credential: &kps.Credential{Type: "password", Key: "pw"}}, `{"credential":{"type":"password","key":"pw"}}`},
	} {
		b, err := json.Marshal(c.spec)
		if err != nil || string(b) != c.want {
			t.Errorf("%+v: %s %v, want %s", c.spec, b, err, c.want)
		}
	}
}
