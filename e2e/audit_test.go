package e2e

import (
	"database/sql"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/openkps/kps/daemon"
	"github.com/openkps/kps/iam"
	"github.com/openkps/kps/internal/pgtest"
	"github.com/openkps/kps/internal/sshdtest"
)

// The audit trail end to end (docs/spec/audit.md): every state-changing route of the OpenAPI
// file records exactly one event naming its actor and target, on both engines; a change rolled
// back inside its transaction leaves no event of success; refused logins are auth.refused with
// the client IP.

// engines runs f on a service over SQLite and one over PostgreSQL (skipped when
// KPS_TEST_POSTGRES is not set), each as a parallel subtest.
func engines(t *testing.T, f func(t *testing.T, s *service, engine string), mutate ...func(*daemon.Config)) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			m := mutate
			if engine == "postgres" {
				dsn := pgtest.Schema(t)
				m = append([]func(*daemon.Config){func(c *daemon.Config) { c.Database = dsn }}, m...)
			}
			f(t, setup(t, m...), engine)
		})
	}
}

// auditEvent is an event as the listings answer it.
type auditEvent struct {
	ID             int64  `json:"id"`
	Time           string `json:"time"`
	RequestID      string `json:"request_id"`
	ProjectID      string `json:"project_id"`
	UserID         string `json:"user_id"`
	UserName       string `json:"user_name"`
	DomainID       string `json:"domain_id"`
	ActorProjectID string `json:"actor_project_id"`
	AuthMethod     string `json:"auth_method"`
	Credential     string `json:"credential"`
	ClientIP       string `json:"client_ip"`
	Action         string `json:"action"`
	TargetType     string `json:"target_type"`
	TargetID       string `json:"target_id"`
	Status         int    `json:"status"`
	Code           string `json:"code"`
	TaskID         string `json:"task_id"`
}

// auditEvents lists a whole trail with s's token: the project's (GET
// /v3/{project_id}/audit-events) or, for project "", the operator's (GET /v3/audit-events).
// query is appended to the URL.
func (s *service) auditEvents(project, query string) []auditEvent {
	s.t.Helper()
	path := "/v3/audit-events"
	if project != "" {
		path = "/v3/" + project + "/audit-events"
	}
	var all []auditEvent
	for offset := 0; ; {
		req, _ := http.NewRequest("GET", s.base+path+"?limit=1000&offset="+strconv.Itoa(offset)+query, nil)
		req.Header.Set("X-Auth-Token", s.token)
		resp, err := apiClient.Do(req)
		if err != nil {
			s.t.Fatal(err)
		}
		var page struct {
			Total  int          `json:"total"`
			Events []auditEvent `json:"audit_events"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			s.t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		all = append(all, page.Events...)
		offset += len(page.Events)
		if len(page.Events) == 0 || offset >= page.Total {
			return all
		}
	}
}

// auditWalk is the state of the route walk: the service, the admin's identity, and the
// highest event ID seen before the call under test.
type auditWalk struct {
	t       *testing.T
	s       *service
	adminID string
	mark    int64
	n       int // a counter for unique names
	host    *sshdtest.Host
}

// want is what the event of the call under test must say.
type auditWant struct {
	project    string // "" for the operator's trail
	action     string
	targetType string
	targetID   string
	userID     string // "" means the admin
	status     int
	task       string // the task the call made, "" none
}

func (w *auditWalk) name(prefix string) string {
	w.n++
	return prefix + "-" + strconv.Itoa(w.n)
}

// newest returns the highest event ID of both trails.
func (w *auditWalk) newest() int64 {
	var max int64
	for _, p := range []string{w.s.project, ""} {
		for _, e := range w.s.auditEvents(p, "") {
			if e.ID > max {
				max = e.ID
			}
		}
	}
	return max
}

// start marks the events before the call under test: what a case's setup recorded is not
// counted.
func (w *auditWalk) start() { w.mark = w.newest() }

// do sends a request with the admin's token (or the token given) and returns the status and
// the body.
func (w *auditWalk) do(method, path string, body any, headers ...string) (int, map[string]any) {
	w.t.Helper()
	h := map[string]string{"X-Auth-Token": w.s.token}
	for i := 0; i+1 < len(headers); i += 2 {
		h[headers[i]] = headers[i+1]
	}
	return w.s.raw(method, path, body, h)
}

// must is do asserting the status.
func (w *auditWalk) must(status int, method, path string, body any, headers ...string) map[string]any {
	w.t.Helper()
	got, out := w.do(method, path, body, headers...)
	if got != status {
		w.t.Fatalf("%s %s: %d %v, want %d", method, path, got, out, status)
	}
	return out
}

// auditRoutes is the walk's table: one case per state-changing route of docs/openapi.json. A
// case prepares what its call needs, calls w.start, makes the call and says what its event
// must hold. A route added to the OpenAPI file without a case fails the walk.
var auditRoutes = map[string]func(w *auditWalk) auditWant{
	// KPS v3.
	"POST /v3/{project_id}/keypairs": func(w *auditWalk) auditWant {
		n := w.name("create")
		w.start()
		w.must(200, "POST", w.kps("/keypairs"), kp(map[string]any{"name": n}))
		return auditWant{project: w.s.project, action: "keypair.create", targetType: "keypair", targetID: n, status: 200}
	},
	"PUT /v3/{project_id}/keypairs/{keypair_name}": func(w *auditWalk) auditWant {
		n := w.keyPair("update", nil)
		w.start()
		w.must(200, "PUT", w.kps("/keypairs/"+n), kp(map[string]any{"description": "updated"}))
		return auditWant{project: w.s.project, action: "keypair.update", targetType: "keypair", targetID: n, status: 200}
	},
	"DELETE /v3/{project_id}/keypairs/{keypair_name}": func(w *auditWalk) auditWant {
		n := w.keyPair("delete", nil)
		w.start()
		w.must(204, "DELETE", w.kps("/keypairs/"+n), nil)
		return auditWant{project: w.s.project, action: "keypair.delete", targetType: "keypair", targetID: n, status: 204}
	},
	"POST /v3/{project_id}/keypairs/batch-import": func(w *auditWalk) auditWant {
		n := w.name("batch")
		_, pub := newEd25519(w.t, n)
		w.start()
		w.must(200, "POST", w.kps("/keypairs/batch-import"), []any{kp(map[string]any{"name": n, "public_key": pub})})
		return auditWant{project: w.s.project, action: "keypair.create", targetType: "keypair", targetID: n, status: 200}
	},
	"POST /v3/{project_id}/keypairs/private-key/import": func(w *auditWalk) auditWant {
		n := w.name("import")
		priv, pub := newEd25519(w.t, n)
		w.must(200, "POST", w.kps("/keypairs"), kp(map[string]any{"name": n, "public_key": pub}))
		w.start()
		w.must(200, "POST", w.kps("/keypairs/private-key/import"), kp(map[string]any{"name": n, "key_protection": protect(map[string]any{"private_key": priv})}))
		return auditWant{project: w.s.project, action: "keypair.import_private_key", targetType: "keypair", targetID: n, status: 200}
	},
	"POST /v3/{project_id}/keypairs/private-key/export": func(w *auditWalk) auditWant {
		n := w.keyPair("export", protect(nil))
		w.start()
		w.must(200, "POST", w.kps("/keypairs/private-key/export"), kp(map[string]any{"name": n}))
		return auditWant{project: w.s.project, action: "keypair.export_private_key", targetType: "keypair", targetID: n, status: 200}
	},
	"POST /v3/{project_id}/keypairs/private-key/batch-export": func(w *auditWalk) auditWant {
		n := w.keyPair("bexport", protect(nil))
		w.start()
		w.must(200, "POST", w.kps("/keypairs/private-key/batch-export"), []any{kp(map[string]any{"name": n})})
		return auditWant{project: w.s.project, action: "keypair.export_private_key", targetType: "keypair", targetID: n, status: 200}
	},
	"DELETE /v3/{project_id}/keypairs/{keypair_name}/private-key": func(w *auditWalk) auditWant {
		n := w.keyPair("clear", protect(nil))
		w.start()
		w.must(200, "DELETE", w.kps("/keypairs/"+n+"/private-key"), nil)
		return auditWant{project: w.s.project, action: "keypair.clear_private_key", targetType: "keypair", targetID: n, status: 200}
	},
	"POST /v3/{project_id}/keypairs/associate": func(w *auditWalk) auditWant {
		n, srv := w.keyPair("assoc", nil), w.server("assoc")
		w.start()
		task := str(w.must(200, "POST", w.kps("/keypairs/associate"), map[string]any{"keypair_name": n, "server": map[string]any{"id": srv}})["task_id"])
		return auditWant{project: w.s.project, action: "keypair.associate", targetType: "server", targetID: srv, status: 200, task: task}
	},
	"POST /v3/{project_id}/keypairs/batch-associate": func(w *auditWalk) auditWant {
		n, srv := w.keyPair("bassoc", nil), w.server("bassoc")
		w.start()
		out := w.must(200, "POST", w.kps("/keypairs/batch-associate"), map[string]any{"batch_keypairs": []any{
			map[string]any{"keypair_name": n, "server": map[string]any{"id": srv}}}})
		var task string
		if items := list(out["tasks"]); len(items) == 1 {
			task = str(obj(items[0])["task_id"])
		}
		// One event per item, aimed at the item's server.
		return auditWant{project: w.s.project, action: "keypair.batch_associate", targetType: "server", targetID: srv, status: 200, task: task}
	},
	"POST /v3/{project_id}/keypairs/disassociate": func(w *auditWalk) auditWant {
		// Only a bound server can be unbound: bind one on a real sshd first.
		srv := w.name("disassoc")
		w.s.addHost(srv, w.host, map[string]any{"credential": map[string]any{"type": "password", "key": w.host.Password}})
		n := w.keyPair("disassoc", nil)
		bind := str(w.must(200, "POST", w.kps("/keypairs/associate"), map[string]any{"keypair_name": n, "server": map[string]any{"id": srv}})["task_id"])
		if st := w.s.waitTask(bind); !strings.HasPrefix(st, "SUCCESS_") {
			w.t.Fatalf("bind %s ended %s", bind, st)
		}
		w.start()
		task := str(w.must(200, "POST", w.kps("/keypairs/disassociate"), map[string]any{"server": map[string]any{"id": srv}})["task_id"])
		return auditWant{project: w.s.project, action: "keypair.disassociate", targetType: "server", targetID: srv, status: 200, task: task}
	},
	"DELETE /v3/{project_id}/failed-tasks/{task_id}": func(w *auditWalk) auditWant {
		task := w.failedTask("dfailed")
		w.start()
		w.must(200, "DELETE", w.kps("/failed-tasks/"+task), nil)
		return auditWant{project: w.s.project, action: "task.delete_failed", targetType: "task", targetID: task, status: 200}
	},
	"DELETE /v3/{project_id}/failed-tasks": func(w *auditWalk) auditWant {
		w.failedTask("dfailedall")
		w.start()
		w.must(200, "DELETE", w.kps("/failed-tasks"), nil)
		return auditWant{project: w.s.project, action: "task.delete_all_failed", targetType: "project", targetID: w.s.project, status: 200}
	},
	"POST /v3/{project_id}/drift-checks": func(w *auditWalk) auditWant {
		id := w.server("dsrv")
		w.start()
		out := w.must(200, "POST", w.kps("/drift-checks"), map[string]any{"servers": []string{id}})
		check, _ := out["drift_check"].(map[string]any)
		return auditWant{project: w.s.project, action: "drift.check", targetType: "drift_check", targetID: str(check["id"]), status: 200}
	},
	"POST /v3/{project_id}/rotations": func(w *auditWalk) auditWant {
		id := w.rotation("rot")
		return auditWant{project: w.s.project, action: "rotation.create", targetType: "rotation", targetID: id, status: 201}
	},
	"POST /v3/{project_id}/rotations/{rotation_id}/action": func(w *auditWalk) auditWant {
		id := w.rotation("rota")
		w.start()
		w.must(200, "POST", w.kps("/rotations/"+id+"/action"), map[string]any{"action": "cancel"})
		return auditWant{project: w.s.project, action: "rotation.action", targetType: "rotation", targetID: id, status: 200}
	},
	"POST /v3/{project_id}/servers": func(w *auditWalk) auditWant {
		id := w.name("srv")
		w.start()
		w.must(201, "POST", w.kps("/servers"), map[string]any{"server": map[string]any{"id": id, "address": "127.0.0.1", "port": 22,
			"credential": map[string]any{"type": "password", "key": "server-password"}}})
		return auditWant{project: w.s.project, action: "server.create", targetType: "server", targetID: id, status: 201}
	},
	"PUT /v3/{project_id}/servers/{server_id}": func(w *auditWalk) auditWant {
		id := w.server("usrv")
		w.start()
		w.must(200, "PUT", w.kps("/servers/"+id), map[string]any{"server": map[string]any{"name": "renamed"}})
		return auditWant{project: w.s.project, action: "server.update", targetType: "server", targetID: id, status: 200}
	},
	"DELETE /v3/{project_id}/servers/{server_id}": func(w *auditWalk) auditWant {
		id := w.server("dsrv")
		w.start()
		w.must(204, "DELETE", w.kps("/servers/"+id), nil)
		return auditWant{project: w.s.project, action: "server.delete", targetType: "server", targetID: id, status: 204}
	},

	// Identity: the operator's trail.
	"POST /v3/auth/tokens": func(w *auditWalk) auditWant {
		w.start()
		c, _ := as(w.t, w.s, newTranscript()).login("Default", "admin", "admin-password-for-tests", projectScope("local-1", "Default"))
		return auditWant{action: "auth.login", targetType: "token", targetID: tokenFingerprint(c.token), status: 201}
	},
	"DELETE /v3/auth/tokens": func(w *auditWalk) auditWant {
		other, _ := as(w.t, w.s, newTranscript()).login("Default", "admin", "admin-password-for-tests", projectScope("local-1", "Default"))
		w.start()
		w.must(204, "DELETE", "/v3/auth/tokens", nil, "X-Subject-Token", other.token)
		return auditWant{action: "token.revoke", targetType: "token", targetID: tokenFingerprint(other.token), status: 204}
	},
	"POST /v3/projects": func(w *auditWalk) auditWant {
		w.start()
		id := str(obj(w.must(201, "POST", "/v3/projects", map[string]any{"project": map[string]any{"name": w.name("proj")}})["project"])["id"])
		return auditWant{action: "project.create", targetType: "project", targetID: id, status: 201}
	},
	"PATCH /v3/projects/{project}": func(w *auditWalk) auditWant {
		id := w.project()
		w.start()
		w.must(200, "PATCH", "/v3/projects/"+id, map[string]any{"project": map[string]any{"description": "updated"}})
		return auditWant{action: "project.update", targetType: "project", targetID: id, status: 200}
	},
	"DELETE /v3/projects/{project}": func(w *auditWalk) auditWant {
		id := w.project()
		w.start()
		w.must(204, "DELETE", "/v3/projects/"+id, nil)
		return auditWant{action: "project.delete", targetType: "project", targetID: id, status: 204}
	},
	"PUT /v3/projects/{project}/users/{user_id}/roles/{role_id}": func(w *auditWalk) auditWant {
		p, u := w.project(), w.user()
		w.start()
		w.must(204, "PUT", "/v3/projects/"+p+"/users/"+u+"/roles/member", nil)
		return auditWant{action: "role.grant", targetType: "role_assignment", targetID: "projects/" + p + "/users/" + u + "/roles/member", status: 204}
	},
	"DELETE /v3/projects/{project}/users/{user_id}/roles/{role_id}": func(w *auditWalk) auditWant {
		p, u := w.project(), w.user()
		w.must(204, "PUT", "/v3/projects/"+p+"/users/"+u+"/roles/member", nil)
		w.start()
		w.must(204, "DELETE", "/v3/projects/"+p+"/users/"+u+"/roles/member", nil)
		return auditWant{action: "role.revoke", targetType: "role_assignment", targetID: "projects/" + p + "/users/" + u + "/roles/member", status: 204}
	},
	"POST /v3/users": func(w *auditWalk) auditWant {
		w.start()
		id := str(obj(w.must(201, "POST", "/v3/users", map[string]any{"user": map[string]any{"name": w.name("user"), "password": "walk-user-password-1"}})["user"])["id"])
		return auditWant{action: "user.create", targetType: "user", targetID: id, status: 201}
	},
	"PATCH /v3/users/{user_id}": func(w *auditWalk) auditWant {
		id := w.user()
		w.start()
		w.must(200, "PATCH", "/v3/users/"+id, map[string]any{"user": map[string]any{"description": "updated"}})
		return auditWant{action: "user.update", targetType: "user", targetID: id, status: 200}
	},
	"DELETE /v3/users/{user_id}": func(w *auditWalk) auditWant {
		id := w.user()
		w.start()
		w.must(204, "DELETE", "/v3/users/"+id, nil)
		return auditWant{action: "user.delete", targetType: "user", targetID: id, status: 204}
	},
	"POST /v3/users/{user_id}/password": func(w *auditWalk) auditWant {
		// The user changes their own password: the actor is the user, not the admin.
		name := w.name("pwuser")
		id := str(obj(w.must(201, "POST", "/v3/users", map[string]any{"user": map[string]any{"name": name, "password": "walk-user-password-1"}})["user"])["id"])
		user, _ := as(w.t, w.s, newTranscript()).login("Default", name, "walk-user-password-1", "")
		w.start()
		w.must(204, "POST", "/v3/users/"+id+"/password", map[string]any{"user": map[string]any{"original_password": "walk-user-password-1", "password": "walk-user-password-2"}},
			"X-Auth-Token", user.token)
		return auditWant{action: "user.change_password", targetType: "user", targetID: id, userID: id, status: 204}
	},
	"POST /v3/domains": func(w *auditWalk) auditWant {
		w.start()
		id := str(obj(w.must(201, "POST", "/v3/domains", map[string]any{"domain": map[string]any{"name": w.name("dom")}})["domain"])["id"])
		return auditWant{action: "domain.create", targetType: "domain", targetID: id, status: 201}
	},
	"PATCH /v3/domains/{domain_id}": func(w *auditWalk) auditWant {
		id := w.domain()
		w.start()
		w.must(200, "PATCH", "/v3/domains/"+id, map[string]any{"domain": map[string]any{"description": "updated"}})
		return auditWant{action: "domain.update", targetType: "domain", targetID: id, status: 200}
	},
	"DELETE /v3/domains/{domain_id}": func(w *auditWalk) auditWant {
		id := w.domain()
		w.must(200, "PATCH", "/v3/domains/"+id, map[string]any{"domain": map[string]any{"enabled": false}})
		w.start()
		w.must(204, "DELETE", "/v3/domains/"+id, nil)
		return auditWant{action: "domain.delete", targetType: "domain", targetID: id, status: 204}
	},
	"PUT /v3/domains/{domain_id}/users/{user_id}/roles/{role_id}": func(w *auditWalk) auditWant {
		d, u := w.defaultDomain(), w.user()
		w.start()
		w.must(204, "PUT", "/v3/domains/"+d+"/users/"+u+"/roles/reader", nil)
		return auditWant{action: "role.grant", targetType: "role_assignment", targetID: "domains/" + d + "/users/" + u + "/roles/reader", status: 204}
	},
	"DELETE /v3/domains/{domain_id}/users/{user_id}/roles/{role_id}": func(w *auditWalk) auditWant {
		d, u := w.defaultDomain(), w.user()
		w.must(204, "PUT", "/v3/domains/"+d+"/users/"+u+"/roles/reader", nil)
		w.start()
		w.must(204, "DELETE", "/v3/domains/"+d+"/users/"+u+"/roles/reader", nil)
		return auditWant{action: "role.revoke", targetType: "role_assignment", targetID: "domains/" + d + "/users/" + u + "/roles/reader", status: 204}
	},
	"POST /v3.0/OS-CREDENTIAL/credentials": func(w *auditWalk) auditWant {
		w.start()
		ak := w.credential()
		return auditWant{action: "credential.create", targetType: "credential", targetID: ak, status: 201}
	},
	"PUT /v3.0/OS-CREDENTIAL/credentials/{access_key}": func(w *auditWalk) auditWant {
		ak := w.credential()
		w.start()
		w.must(200, "PUT", "/v3.0/OS-CREDENTIAL/credentials/"+ak, map[string]any{"credential": map[string]any{"description": "updated"}})
		return auditWant{action: "credential.update", targetType: "credential", targetID: ak, status: 200}
	},
	"DELETE /v3.0/OS-CREDENTIAL/credentials/{access_key}": func(w *auditWalk) auditWant {
		ak := w.credential()
		w.start()
		w.must(204, "DELETE", "/v3.0/OS-CREDENTIAL/credentials/"+ak, nil)
		return auditWant{action: "credential.delete", targetType: "credential", targetID: ak, status: 204}
	},
	"POST /v3.0/OS-CREDENTIAL/securitytokens": func(w *auditWalk) auditWant {
		w.start()
		c := obj(w.must(201, "POST", "/v3.0/OS-CREDENTIAL/securitytokens", map[string]any{"auth": map[string]any{"identity": map[string]any{
			"methods": []string{"token"}, "token": map[string]any{"duration_seconds": 900}}}})["credential"])
		return auditWant{action: "credential.create_temporary", targetType: "credential", targetID: str(c["access"]), status: 201}
	},
}

func init() {
	// Nova: each tree, with the project in the path or taken from the token.
	for _, tree := range []struct {
		prefix string
		legacy bool
	}{{"/compute/v2.1", false}, {"/compute/v2", true}, {"/v2.1", false}, {"/v2", true}} {
		for _, withProject := range []bool{true, false} {
			tree, withProject := tree, withProject
			if !withProject && !strings.HasPrefix(tree.prefix, "/compute") {
				continue // /v2.1/os-keypairs and /v2/os-keypairs are not routes
			}
			pattern := tree.prefix + "/os-keypairs"
			if withProject {
				pattern = tree.prefix + "/{project_id}/os-keypairs"
			}
			path := func(w *auditWalk) string { return strings.Replace(pattern, "{project_id}", w.s.project, 1) }
			version, create, del := "2.2", 201, 204
			if tree.legacy {
				version, create, del = "", 200, 202
			}
			auditRoutes["POST "+pattern] = func(w *auditWalk) auditWant {
				n := w.name("nova")
				w.start()
				w.s.nova("POST", path(w), version, kp(map[string]any{"name": n})).want(w.t, create, "")
				return auditWant{project: w.s.project, action: "keypair.create", targetType: "keypair", targetID: n, status: create}
			}
			auditRoutes["DELETE "+pattern+"/{keypair_name}"] = func(w *auditWalk) auditWant {
				n := w.keyPair("novadel", nil)
				w.start()
				w.s.nova("DELETE", path(w)+"/"+n, version, nil).want(w.t, del, "")
				return auditWant{project: w.s.project, action: "keypair.delete", targetType: "keypair", targetID: n, status: del}
			}
		}
	}
}

// fingerprint is how the trail names a token (auth.md §12.5).
func tokenFingerprint(token string) string { return iam.TokenFingerprint(token) }

func (w *auditWalk) kps(path string) string { return "/v3/" + w.s.project + path }

// keyPair creates a key pair, hosted when protection is given, and returns its name.
func (w *auditWalk) keyPair(prefix string, protection map[string]any) string {
	n := w.name(prefix)
	k := map[string]any{"name": n}
	if protection != nil {
		k["key_protection"] = protection
	}
	w.must(200, "POST", w.kps("/keypairs"), kp(k))
	return n
}

// rotation starts a rotation of two servers nothing listens for to a new key pair (given its
// private key) and returns its ID; the walk's mark is set just before the call. It stops after
// its one canary until resumed, so it cannot have ended before a later action.
func (w *auditWalk) rotation(prefix string) string {
	srvs := []string{w.server(prefix + "srv"), w.server(prefix + "srv2")}
	out := w.must(200, "POST", w.kps("/keypairs"), kp(map[string]any{"name": w.name(prefix + "kp")}))
	k, _ := out["keypair"].(map[string]any)
	w.start()
	out = w.must(201, "POST", w.kps("/rotations"), map[string]any{"rotation": map[string]any{"keypair_name": k["name"],
		"servers": srvs, "private_key": k["private_key"], "batch_size": 1, "canary": 1, "max_failures": 5}})
	r, _ := out["rotation"].(map[string]any)
	return str(r["id"])
}

// server adds a server nothing listens for: its tasks fail fast.
func (w *auditWalk) server(prefix string) string {
	id := w.name(prefix)
	w.must(201, "POST", w.kps("/servers"), map[string]any{"server": map[string]any{"id": id, "address": "127.0.0.1",
		"port": closedPort(w.t), "credential": map[string]any{"type": "password", "key": "server-password"}}})
	return id
}

// failedTask binds a key pair to a server that refuses the connection and returns the failed
// task.
func (w *auditWalk) failedTask(prefix string) string {
	n, srv := w.keyPair(prefix, nil), w.server(prefix)
	task := str(w.must(200, "POST", w.kps("/keypairs/associate"), map[string]any{"keypair_name": n, "server": map[string]any{"id": srv}})["task_id"])
	if st := w.s.waitTask(task); !strings.HasPrefix(st, "FAILED_") {
		w.t.Fatalf("task %s ended %s", task, st)
	}
	return task
}

func (w *auditWalk) project() string {
	return str(obj(w.must(201, "POST", "/v3/projects", map[string]any{"project": map[string]any{"name": w.name("proj")}})["project"])["id"])
}

func (w *auditWalk) user() string {
	return str(obj(w.must(201, "POST", "/v3/users", map[string]any{"user": map[string]any{"name": w.name("user"), "password": "walk-user-password-1"}})["user"])["id"])
}

func (w *auditWalk) domain() string {
	return str(obj(w.must(201, "POST", "/v3/domains", map[string]any{"domain": map[string]any{"name": w.name("dom")}})["domain"])["id"])
}

func (w *auditWalk) defaultDomain() string {
	for _, d := range list(w.must(200, "GET", "/v3/domains?name=Default", nil)["domains"]) {
		return str(obj(d)["id"])
	}
	w.t.Fatal("no domain Default")
	return ""
}

// credential creates an access key of the admin's and returns its AK.
func (w *auditWalk) credential() string {
	return str(obj(w.must(201, "POST", "/v3.0/OS-CREDENTIAL/credentials", map[string]any{"credential": map[string]any{"description": "walk"}})["credential"])["access"])
}

// stateChangingRoutes returns "METHOD path" of every POST, PUT, PATCH and DELETE of
// docs/openapi.json.
func stateChangingRoutes(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../docs/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var routes []string
	for path, ops := range doc.Paths {
		for method := range ops {
			switch m := strings.ToUpper(method); m {
			case "POST", "PUT", "PATCH", "DELETE":
				routes = append(routes, m+" "+path)
			}
		}
	}
	sort.Strings(routes)
	return routes
}

// TestAuditEveryStateChangingRoute walks every state-changing route of docs/openapi.json on
// both engines: each call records exactly one event, in the right trail, naming the actor (the
// admin's user, name, domain, project, token fingerprint, client IP, request ID), the action,
// the target, the status and the task it made. A route without a case in auditRoutes fails.
func TestAuditEveryStateChangingRoute(t *testing.T) {
	t.Parallel()
	routes := stateChangingRoutes(t)
	inDoc := map[string]bool{}
	for _, r := range routes {
		inDoc[r] = true
		if auditRoutes[r] == nil {
			t.Errorf("%s changes state and has no case in auditRoutes: say which event it records", r)
		}
	}
	for r := range auditRoutes {
		if !inDoc[r] {
			t.Errorf("auditRoutes has a case for %s, which docs/openapi.json does not list", r)
		}
	}
	if t.Failed() {
		return
	}
	engines(t, func(t *testing.T, s *service, engine string) {
		w := &auditWalk{t: t, s: s, host: sshdtest.Start(t, sshdtest.Options{})}
		tok := obj(w.must(200, "GET", "/v3/auth/tokens", nil, "X-Subject-Token", s.token)["token"])
		w.adminID = str(obj(tok["user"])["id"])
		for _, route := range routes {
			want := auditRoutes[route](w)
			var got []auditEvent
			for _, p := range []string{s.project, ""} {
				for _, e := range s.auditEvents(p, "") {
					if e.ID > w.mark {
						got = append(got, e)
					}
				}
			}
			if len(got) != 1 {
				t.Errorf("%s: %d events, want exactly one: %+v", route, len(got), got)
				continue
			}
			e := got[0]
			user := want.userID
			if user == "" {
				user = w.adminID
			}
			if e.ProjectID != want.project || e.Action != want.action || e.TargetType != want.targetType || e.TargetID != want.targetID ||
				e.Status != want.status || e.Code != "" || e.TaskID != want.task {
				t.Errorf("%s: event %+v, want %+v", route, e, want)
			}
			if e.UserID != user || e.UserName == "" || e.DomainID == "" || e.ClientIP != "127.0.0.1" ||
				!hex32.MatchString(e.RequestID) || e.Time == "" {
				t.Errorf("%s: actor of %+v, want user %s from 127.0.0.1", route, e, user)
			}
			if want.action == "auth.login" {
				if e.AuthMethod != "password" || e.Credential != "" || e.ActorProjectID != s.project {
					t.Errorf("%s: login's actor %+v", route, e)
				}
			} else if e.AuthMethod != "token" || e.Credential == "" || strings.Contains(s.token, e.Credential) {
				t.Errorf("%s: credential of %+v: want the token's fingerprint", route, e)
			}
		}
		t.Logf("%s: %d routes walked", engine, len(routes))
	})
}

// database opens the service's database beside it, for what no API does: forcing a failure
// inside a transaction.
func (s *service) database() *sql.DB {
	s.t.Helper()
	driver, source := "sqlite", "file:"+filepath.Join(s.main.Config.DataDir, "kps.db")+"?_pragma=busy_timeout(5000)"
	if s.main.Config.Database != "" {
		driver, source = "pgx", s.main.Config.Database
	}
	db, err := sql.Open(driver, source)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { db.Close() })
	return db
}

// TestAuditRolledBackChangeLeavesNoEvent forces failures inside the write transaction of a
// change, with triggers the service does not know of, on both engines. When the event's own
// insert fails (the transaction's last statement), the change goes with it: no server created,
// no task made, no key pair bound, and no event. When the change's statement fails, the
// transaction commits nothing and the trail holds only the refusal (5xx with its code), never
// an event of success.
func TestAuditRolledBackChangeLeavesNoEvent(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, s *service, engine string) {
		s.must(200, "POST", "/keypairs", kp(map[string]any{"name": "rb"}))
		s.must(201, "POST", "/servers", map[string]any{"server": map[string]any{"id": "doomed-bind", "address": "127.0.0.1",
			"port": closedPort(t), "credential": map[string]any{"type": "password", "key": "server-password"}}})

		db := s.database()
		ddl := []string{
			`CREATE TRIGGER doom_event BEFORE INSERT ON audit_events WHEN NEW.target_id LIKE 'doomed-%' BEGIN SELECT RAISE(ABORT, 'forced failure'); END`,
			`CREATE TRIGGER doom_server BEFORE INSERT ON servers WHEN NEW.id = 'broken-srv' BEGIN SELECT RAISE(ABORT, 'forced failure'); END`,
		}
		if engine == "postgres" {
			ddl = []string{
				`CREATE FUNCTION doom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'forced failure'; END $$`,
				`CREATE TRIGGER doom_event BEFORE INSERT ON audit_events FOR EACH ROW WHEN (NEW.target_id LIKE 'doomed-%') EXECUTE FUNCTION doom()`,
				`CREATE TRIGGER doom_server BEFORE INSERT ON servers FOR EACH ROW WHEN (NEW.id = 'broken-srv') EXECUTE FUNCTION doom()`,
			}
		}
		for _, q := range ddl {
			if _, err := db.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		before := len(s.auditEvents(s.project, ""))

		// The event's insert fails: the server is not created.
		if got, out := s.call("POST", "/servers", map[string]any{"server": map[string]any{"id": "doomed-srv", "address": "127.0.0.1",
			"port": 22, "credential": map[string]any{"type": "password", "key": "server-password"}}}); got < 500 {
			t.Fatalf("create with a failing event: %d %v, want 5xx", got, out)
		}
		s.wantError(404, "KPS.6204", "GET", "/servers/doomed-srv", nil)

		// The event's insert fails: the bind makes no task and binds nothing.
		if got, out := s.call("POST", "/keypairs/associate", map[string]any{"keypair_name": "rb", "server": map[string]any{"id": "doomed-bind"}}); got < 500 {
			t.Fatalf("bind with a failing event: %d %v, want 5xx", got, out)
		}
		if srv := obj(s.must(200, "GET", "/servers/doomed-bind", nil)["server"]); srv["keypair_name"] != nil && srv["keypair_name"] != "" {
			t.Errorf("doomed-bind is bound to %v", srv["keypair_name"])
		}
		for _, l := range []string{"/running-tasks", "/failed-tasks"} {
			if total := s.must(200, "GET", l, nil)["total"]; total != float64(0) {
				t.Errorf("GET %s: total %v after a bind rolled back", l, total)
			}
		}

		// The change's own statement fails: only the refusal is recorded.
		if got, out := s.call("POST", "/servers", map[string]any{"server": map[string]any{"id": "broken-srv", "address": "127.0.0.1",
			"port": 22, "credential": map[string]any{"type": "password", "key": "server-password"}}}); got < 500 {
			t.Fatalf("create failing in its statement: %d %v, want 5xx", got, out)
		}
		s.wantError(404, "KPS.6204", "GET", "/servers/broken-srv", nil)

		events := s.auditEvents(s.project, "")
		for _, e := range events {
			if e.TargetID == "doomed-srv" || (e.TargetID == "doomed-bind" && e.Action == "keypair.associate") {
				t.Errorf("an event of a rolled-back change: %+v", e)
			}
		}
		var broken []auditEvent
		for _, e := range events {
			if e.TargetID == "broken-srv" {
				broken = append(broken, e)
			}
		}
		if len(broken) != 1 || broken[0].Status < 500 || broken[0].Code == "" || broken[0].Action != "server.create" {
			t.Errorf("events of the create that failed in its statement: %+v, want one refusal (5xx, a code)", broken)
		}
		if len(events) != before+1 {
			t.Errorf("%d events after the three failures, want %d (the one refusal)", len(events), before+1)
		}
	})
}

// TestAuditRefusedLoginsAndCredentials: a refused login is auth.refused with the client IP a
// trusted proxy gave (--trusted-proxies), the user it named and no password; a request with a
// revoked token or a bad signature is auth.refused naming the route and the credential's
// fingerprint or AK, never the token or the secret; a refusal of the caller's role on a route is
// the route's event with 403, not auth.refused. All in the operator's trail but the last.
func TestAuditRefusedLoginsAndCredentials(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, s *service, engine string) {
		// A refused login through the proxy.
		body := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","domain":{"name":"Default"},"password":"not-the-password-9"}}}}}`
		code, _ := s.raw("POST", "/v3/auth/tokens", body, map[string]string{"X-Forwarded-For": "203.0.113.7"})
		if code != 401 {
			t.Fatalf("login with a wrong password: %d", code)
		}
		// A revoked token on a KPS route.
		other := as(t, s, newTranscript())
		gone, _ := other.login("Default", "admin", "admin-password-for-tests", projectScope("local-1", "Default"))
		s.raw("DELETE", "/v3/auth/tokens", nil, map[string]string{"X-Auth-Token": s.token, "X-Subject-Token": gone.token})
		if code, _ := s.raw("GET", "/v3/"+s.project+"/keypairs", nil, map[string]string{"X-Auth-Token": gone.token}); code != 401 {
			t.Fatalf("GET with a revoked token: %d", code)
		}
		// A signature with a wrong SK.
		c := obj(other.want(201, "POST", "/v3.0/OS-CREDENTIAL/credentials", map[string]any{"credential": map[string]any{"description": "refused"}})["credential"])
		ak := str(c["access"])
		if code, _ := signedCall(t, s, ak, "not-the-secret-key-of-this-ak-0000000000", "GET", "/keypairs", nil); code != 401 {
			t.Fatalf("GET with a bad signature: %d", code)
		}
		// A reader creating a key pair: the route's refusal, not an authentication's.
		reader := s.addUser("audit-reader", "reader")
		reader.wantError(403, "KPS.9006", "POST", "/keypairs", kp(map[string]any{"name": "nope"}))

		refused := s.auditEvents("", "&action=auth.refused")
		if len(refused) != 3 {
			t.Fatalf("%d auth.refused events, want 3: %+v", len(refused), refused)
		}
		// Newest first: the signature, the token, the login.
		sig, tok, login := refused[0], refused[1], refused[2]
		if login.ClientIP != "203.0.113.7" || login.TargetType != "user" || login.TargetID == "" || login.Status != 401 ||
			!strings.HasPrefix(login.Code, "KPS.") || login.UserID != "" || login.ProjectID != "" {
			t.Errorf("refused login: %+v", login)
		}
		if tok.ClientIP != "127.0.0.1" || tok.AuthMethod != "token" || tok.Credential != tokenFingerprint(gone.token) ||
			tok.TargetType != "route" || tok.TargetID != "GET /v3/"+s.project+"/keypairs" || tok.Status != 401 {
			t.Errorf("refused token: %+v", tok)
		}
		if sig.AuthMethod != "aksk" || sig.Credential != ak || sig.TargetType != "route" || sig.Status != 401 {
			t.Errorf("refused signature: %+v", sig)
		}
		var denied []auditEvent
		// Refused before its body was read, the call names no key pair: the route's action does.
		for _, e := range s.auditEvents(s.project, "&action=keypair.create") {
			if e.UserName == "audit-reader" {
				denied = append(denied, e)
			}
		}
		if len(denied) != 1 || denied[0].Status != 403 || denied[0].Code != "KPS.9006" || denied[0].UserName != "audit-reader" {
			t.Errorf("the reader's refused create: %+v", denied)
		}
	}, func(c *daemon.Config) { c.TrustedProxies = "127.0.0.1/32" })
}

// TestAuditRetentionSweep: the events past --audit-retention are deleted when the service
// starts (and hourly after, as old tasks are purged); the default keeps 90 days, on both
// engines. The events are aged in the database, since nobody waits 90 days.
func TestAuditRetentionSweep(t *testing.T) {
	t.Parallel()
	engines(t, func(t *testing.T, s *service, engine string) {
		for _, n := range []string{"aged-100d", "aged-60d", "fresh"} {
			s.must(200, "POST", "/keypairs", kp(map[string]any{"name": n}))
		}
		db := s.database()
		const day = int64(24 * 60 * 60 * 1000)
		for n, days := range map[string]int64{"aged-100d": 100, "aged-60d": 60} {
			if _, err := db.Exec("UPDATE audit_events SET created = created - " + strconv.FormatInt(days*day, 10) + " WHERE target_id = '" + n + "'"); err != nil {
				t.Fatal(err)
			}
		}
		db.Close()
		targets := func(s *service) string {
			var names []string
			for _, e := range s.auditEvents(s.project, "&action=keypair.create") {
				names = append(names, e.TargetID)
			}
			sort.Strings(names)
			return strings.Join(names, ",")
		}
		if got := targets(s); got != "aged-100d,aged-60d,fresh" {
			t.Fatalf("before the sweep: %s", got)
		}
		restart := func(retention time.Duration) *service {
			cfg := s.main.Config
			s.main.Close()
			s = setup(t, func(c *daemon.Config) { c.DataDir, c.Database, c.AuditRetention = cfg.DataDir, cfg.Database, retention })
			return s
		}
		// The sweep runs beside the service: poll it, with a deadline.
		eventually := func(s *service, want string) string {
			got := targets(s)
			for deadline := time.Now().Add(15 * time.Second); got != want && time.Now().Before(deadline); got = targets(s) {
				time.Sleep(50 * time.Millisecond)
			}
			return got
		}
		if got := eventually(restart(0), "aged-60d,fresh"); got != "aged-60d,fresh" {
			t.Errorf("after a start with the default retention: %s, want aged-60d,fresh", got)
		}
		if got := eventually(restart(30*24*time.Hour), "fresh"); got != "fresh" {
			t.Errorf("after a start with --audit-retention 720h: %s, want fresh", got)
		}
	})
}

// TestCLIAuditList: `kps audit list` reads the project's trail (--operator: the operator's),
// with its filters, --limit across pages, and -o json|yaml|table.
func TestCLIAuditList(t *testing.T) {
	t.Parallel()
	s := setup(t)
	tm := newTerminal(t, s)
	tm.login()
	for i := range 5 {
		tm.must(0, "", "keypair", "create", "cli-audit-"+strconv.Itoa(i), "--out", filepath.Join(t.TempDir(), "key"))
	}
	type ev struct {
		ID         int64  `json:"id"`
		Action     string `json:"action"`
		TargetID   string `json:"target_id"`
		UserName   string `json:"user_name"`
		ClientIP   string `json:"client_ip"`
		Credential string `json:"credential"`
	}
	all := decodeJSON[[]ev](t, tm.must(0, "", "audit", "list", "-o", "json").stdout)
	if len(all) != 5 || all[0].TargetID != "cli-audit-4" || all[4].TargetID != "cli-audit-0" || all[0].Action != "keypair.create" ||
		all[0].UserName != "admin" || all[0].ClientIP != "127.0.0.1" || all[0].Credential == "" {
		t.Fatalf("kps audit list -o json: %+v", all)
	}
	// --limit reads only that many, newest first; a filter narrows on the service.
	if got := decodeJSON[[]ev](t, tm.must(0, "", "audit", "list", "--limit", "2", "-o", "json").stdout); len(got) != 2 || got[1].ID != all[1].ID {
		t.Fatalf("--limit 2: %+v", got)
	}
	if got := decodeJSON[[]ev](t, tm.must(0, "", "audit", "list", "--resource", "cli-audit-2", "-o", "json").stdout); len(got) != 1 || got[0].ID != all[2].ID {
		t.Fatalf("--resource cli-audit-2: %+v", got)
	}
	if got := decodeJSON[[]ev](t, tm.must(0, "", "audit", "list", "--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "-o", "json").stdout); len(got) != 0 {
		t.Fatalf("--since in an hour: %+v", got)
	}
	// The operator's trail holds the logins.
	ops := decodeJSON[[]ev](t, tm.must(0, "", "audit", "list", "--operator", "--action", "auth.login", "-o", "json").stdout)
	if len(ops) < 2 || ops[0].Action != "auth.login" {
		t.Fatalf("--operator --action auth.login: %+v", ops)
	}
	var y []map[string]any
	if err := yaml.Unmarshal([]byte(tm.must(0, "", "audit", "list", "-o", "yaml").stdout), &y); err != nil || len(y) != 5 || y[0]["id"] != int(all[0].ID) {
		t.Fatalf("-o yaml: %v %v", y, err)
	}
	if out := tm.must(0, "", "audit", "list").stdout; !strings.HasPrefix(out, "TIME") || !strings.Contains(out, "keypair cli-audit-3") ||
		strings.Count(out, "\n") != 6 {
		t.Fatalf("table:\n%s", out)
	}
	tm.must(2, "", "audit", "list", "--since", "yesterday")
	tm.must(2, "", "audit", "list", "--limit", "-1")
}

// TestAuditTrailReaders: the project's trail is its admin's to read (a member or reader gets
// 403 KPS.9006); the events without a project are the operator admin's alone, not a project
// admin's. Bad queries are 400 with a KPS code.
func TestAuditTrailReaders(t *testing.T) {
	t.Parallel()
	s := setup(t)
	s.must(200, "POST", "/keypairs", kp(map[string]any{"name": "read-me"}))
	admin, member, reader := s.addUser("trail-admin", "admin"), s.addUser("trail-member", "member"), s.addUser("trail-reader", "reader")
	if got := admin.must(200, "GET", "/audit-events?resource_id=read-me", nil); got["total"] != float64(1) {
		t.Fatalf("the project admin reads %v", got)
	}
	for _, c := range []*service{member, reader} {
		c.wantError(403, "KPS.9006", "GET", "/audit-events", nil)
	}
	for _, c := range []*service{admin, member} {
		if code, out := c.raw("GET", "/v3/audit-events", nil, map[string]string{"X-Auth-Token": c.token}); code != 403 || out["error_code"] != "KPS.9006" {
			t.Errorf("%s reads the operator's trail: %d %v", c.token[:8], code, out)
		}
	}
	// user_id, since (inclusive) and until (exclusive) reach the trail through the query.
	member.must(200, "POST", "/keypairs", kp(map[string]any{"name": "by-member"}))
	var mine, theirs auditEvent
	for _, e := range admin.auditEvents(s.project, "&action=keypair.create") {
		switch e.TargetID {
		case "read-me":
			mine = e
		case "by-member":
			theirs = e
		}
	}
	if mine.ID == 0 || theirs.ID == 0 || mine.UserID == theirs.UserID || mine.Time >= theirs.Time {
		t.Fatalf("the two creations: %+v %+v", mine, theirs)
	}
	ids := func(evs []auditEvent) (out []string) {
		for _, e := range evs {
			out = append(out, e.TargetID)
		}
		return out
	}
	if got := admin.auditEvents(s.project, "&user_id="+theirs.UserID); len(got) != 1 || got[0].ID != theirs.ID {
		t.Errorf("user_id=%s: %v", theirs.UserID, ids(got))
	}
	if got := admin.auditEvents(s.project, "&action=keypair.create&since="+theirs.Time); len(got) != 1 || got[0].ID != theirs.ID {
		t.Errorf("since=%s: %v", theirs.Time, ids(got))
	}
	if got := admin.auditEvents(s.project, "&action=keypair.create&until="+theirs.Time); len(got) != 1 || got[0].ID != mine.ID {
		t.Errorf("until=%s: %v", theirs.Time, ids(got))
	}
	for _, q := range []string{"?limit=0", "?limit=1001", "?offset=-1", "?since=yesterday", "?until=2025-13-01T00:00:00Z", "?action=a&action=b"} {
		if code, out := admin.call("GET", "/audit-events"+q, nil); code != 400 || !strings.HasPrefix(str(out["error_code"]), "KPS.600") {
			t.Errorf("GET audit-events%s: %d %v", q, code, out)
		}
	}
}
