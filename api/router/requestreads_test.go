package router

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
	"github.com/openkps/kps/service"
	"github.com/openkps/kps/store"
	"github.com/openkps/kps/store/storetest"
)

const listProject = "0b7e4c2a91d34f5e8c6a2d1f3e5b7a90"

// readsCountingStore is the real PostgreSQL store's request reads, counting the requests whose
// reads it was asked to make together, by project: a decorator, which keeps every cache
// working because the router is given it by name.
type readsCountingStore struct {
	kps.RequestReader
	asked    atomic.Int64
	projects chan string
}

func (s *readsCountingStore) ReadRequest(ctx context.Context, projectID, clientLockKey string) (*kps.RequestReads, error) {
	s.asked.Add(1)
	s.projects <- projectID
	return s.RequestReader.ReadRequest(ctx, projectID, clientLockKey)
}

// versionIdentity accepts one token for listProject, taking the identity version from the
// request's reads as iam.Service does.
type versionIdentity struct {
	versions chan int64
	after    func() // run after the version was read, if set
}

func (v *versionIdentity) AuthenticateAt(ctx context.Context, reads *kps.RequestReads, token, projectID, _ string) (*kps.Principal, error) {
	if token != "t" || projectID != listProject || reads == nil {
		return nil, kps.Errorf(kps.ErrUnauthenticated, "no")
	}
	v.versions <- reads.IdentityVersion
	if v.after != nil {
		v.after()
	}
	return &kps.Principal{UserID: "u", ProjectID: listProject, Roles: []kps.Role{kps.RoleReader}, AuthMethod: kps.AuthToken}, nil
}

func (v *versionIdentity) AuthenticateSignatureAt(context.Context, *kps.RequestReads, *http.Request, []byte, string, string) (*kps.Principal, error) {
	return nil, kps.Errorf(kps.ErrUnauthenticated, "no")
}

func (v *versionIdentity) CredentialScheme(*http.Request) (bool, error) { return false, nil }

func (v *versionIdentity) LogCredentials(*http.Request) []any { return nil }

// TestRequestReadsOnPostgres: the router has the store make an authenticated request's reads
// together, for the path's project, and hands them to the authentication and the handler: the
// identity version authentication uses and the task version the list is cached on come from
// the request's one query (on another replica's change, the next request sees it).
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
	counting := &readsCountingStore{RequestReader: reader, projects: make(chan string, 10)}
	ident := &versionIdentity{versions: make(chan int64, 10)}
	srv := New(Config{}, Deps{Identity: ident, Reads: counting, TaskLists: reader})
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
		srv.ServeHTTP(w, r)
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
		Scope: kps.ScopeDomain, UserID: "u", PublicKey: "ssh-ed25519 AAAA", Fingerprint: "f", Algorithm: "ED25519"}, kps.KeyPairQuota{}); err != nil {
		t.Fatal(err)
	}
	if err := writer.CreateServer(t.Context(), &kps.Server{ProjectID: listProject, ID: "s1", Name: "s1", Address: "192.0.2.1",
		Port: 22, User: "root", SSHDConfig: kps.DefaultSSHDConfig, Credential: []byte("c"), ReachByAdmin: true}, 0); err != nil {
		t.Fatal(err)
	}
	ident.after = func() {
		ident.after = nil
		_, err := writer.SubmitTask(t.Context(), kps.TaskSubmission{ID: "00000000-0000-4000-8000-000000000001",
			ProjectID: listProject, UserID: "u", Operation: kps.OpReset, KeyPairName: "kp", ServerID: "s1"}, service.AdmitTask)
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

func (*versionIdentity) SameDomain(_ context.Context, named string, p *kps.Principal) (bool, error) {
	return named == p.DomainID, nil
}
