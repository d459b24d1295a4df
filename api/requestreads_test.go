package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/pgtest"
	"github.com/openkps/kps/store"
	"github.com/openkps/kps/store/storetest"
)

// readsCountingStore is the real PostgreSQL store, counting the requests whose reads it was
// asked to make together, by project.
type readsCountingStore struct {
	*store.DB
	asked    atomic.Int64
	projects chan string
}

func (s *readsCountingStore) WithRequestReads(ctx context.Context, projectID string) context.Context {
	s.asked.Add(1)
	s.projects <- projectID
	return s.DB.WithRequestReads(ctx, projectID)
}

// versionIdentity accepts one token for listProject, reading the identity version as
// iam.Service does (under the request's context).
type versionIdentity struct {
	db       *store.DB
	versions chan int64
	after    func() // run after the version was read, if set
}

func (v *versionIdentity) Login(context.Context, []byte, string, string) (string, any, error) {
	return "", nil, kps.Errorf(kps.ErrUnauthenticated, "no logins here")
}

func (v *versionIdentity) Authenticate(ctx context.Context, token, projectID, _ string) (*kps.Principal, error) {
	if token != "t" || projectID != listProject {
		return nil, kps.Errorf(kps.ErrUnauthenticated, "no")
	}
	iv, _, err := v.db.IdentityVersion(ctx)
	if err != nil {
		return nil, err
	}
	v.versions <- iv
	if v.after != nil {
		v.after()
	}
	return &kps.Principal{UserID: "u", ProjectID: listProject, Roles: []kps.Role{kps.RoleReader}, AuthMethod: kps.AuthToken}, nil
}

func (v *versionIdentity) AuthenticateSignature(context.Context, *http.Request, []byte, string, string) (*kps.Principal, error) {
	return nil, kps.Errorf(kps.ErrUnauthenticated, "no")
}

// TestRequestReadsOnPostgres: the router has the store make an authenticated request's reads
// together, for the path's project, and the authentication and the handler run under that
// context: the identity version authentication reads and the task version the list is cached
// on come from the request's one query (on another replica's change, the next request sees it).
func TestRequestReadsOnPostgres(t *testing.T) {
	dsn := pgtest.Schema(t)
	clock := storetest.NewClock(storetest.Epoch)
	open := func() *store.DB {
		db, err := store.OpenPostgres(t.Context(), dsn, store.Options{Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	writer, reader := open(), open()
	counting := &readsCountingStore{DB: reader, projects: make(chan string, 10)}
	ident := &versionIdentity{db: reader, versions: make(chan int64, 10)}
	srv := New(counting, ident, nil, nil, nil, Config{})
	project := func() string {
		t.Helper()
		select {
		case p := <-counting.projects:
			return p
		case <-time.After(5 * time.Second):
			t.Fatal("the router did not ask the store for the request's reads")
			return ""
		}
	}
	get := func() (int, string) {
		t.Helper()
		r := httptest.NewRequest("GET", "/v3/"+listProject+"/failed-tasks?limit=10", nil)
		r.Header.Set("X-Auth-Token", "t")
		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	if code, body := get(); code != 200 || body != `{"total":0,"tasks":[]}` {
		t.Fatalf("first list: %d %s", code, body)
	}
	if p := project(); p != listProject {
		t.Fatalf("request reads for project %q", p)
	}
	iv0 := <-ident.versions
	// A change of identity through the other replica: the next request's version moves.
	if _, err := writer.CreateDomain(t.Context(), &kps.Domain{Name: "d2", Enabled: true}, "r"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Millisecond)
	if code, _ := get(); code != 200 {
		t.Fatalf("second list: %d", code)
	}
	project()
	if iv := <-ident.versions; iv <= iv0 {
		t.Fatalf("identity version %d after a change, %d before", iv, iv0)
	}

	// The handler reads the task version from the same query: a task submitted through the
	// other replica while the request is being authenticated (after the query) is not in its
	// version, so the page cached before is served; the next request shows the task. (Either
	// answer is right for a change that commits while the request runs; this one shows where
	// the version came from.)
	if err := writer.CreateKeyPair(t.Context(), &kps.KeyPair{ProjectID: listProject, Name: "kp", Type: kps.TypeSSH,
		Scope: kps.ScopeDomain, UserID: "u", PublicKey: "ssh-ed25519 AAAA", Fingerprint: "f", Algorithm: "ED25519"}, 0); err != nil {
		t.Fatal(err)
	}
	if err := writer.CreateServer(t.Context(), &kps.Server{ProjectID: listProject, ID: "s1", Name: "s1", Address: "192.0.2.1",
		Port: 22, User: "root", SSHDConfig: kps.DefaultSSHDConfig, Credential: []byte("c"), ReachByAdmin: true}, 0); err != nil {
		t.Fatal(err)
	}
	ident.after = func() {
		ident.after = nil
		_, err := writer.SubmitTask(t.Context(), kps.TaskSubmission{ID: "00000000-0000-4000-8000-000000000001",
			ProjectID: listProject, UserID: "u", Operation: kps.OpReset, KeyPairName: "kp", ServerID: "s1"})
		var task *kps.Task
		if err == nil {
			task, err = writer.ClaimTask(t.Context(), "w", time.Minute)
		}
		if err == nil {
			err = writer.FinishTask(t.Context(), task, kps.TaskOutcome{ErrorCode: kps.TaskUnreachable, ErrorMsg: "refused"})
		}
		if err != nil {
			t.Error(err)
		}
	}
	if code, body := get(); code != 200 || body != `{"total":0,"tasks":[]}` {
		t.Fatalf("list during the change: %d %s", code, body)
	}
	if code, body := get(); code != 200 || !strings.HasPrefix(body, `{"total":1,`) {
		t.Fatalf("list after the change: %d %s", code, body)
	}
	for range 2 {
		project()
		<-ident.versions
	}
	if n := counting.asked.Load(); n != 4 {
		t.Fatalf("request reads asked %d times for 4 requests", n)
	}
}
