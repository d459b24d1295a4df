// Package kpsv3 serves the KPS v3 API of kps-v3-api.md under /v3/{project_id}/ — key pairs,
// hosted private keys, binds and tasks — and the inventory extension of inventory.md. Its
// handlers follow one recipe: decode → validate → authorize (the route's role) → act (one call
// of a kps.KeyPairService, kps.TaskService or kps.ServerService, which hold the rules) →
// render, errors in the KPS body {"error_code","error_msg"}. The task lists are rendered by
// their read model, tasklist.
//
// It imports the domain package, api, api/kpsv3/tasklist and api/wire (and
// golang.org/x/crypto/ssh to read host keys and credentials); never iam, store or service.
package kpsv3

import (
	"net/http"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
	"github.com/openkps/kps/api/kpsv3/tasklist"
)

// API is the KPS v3 family: its routes on their own ServeMux.
type API struct {
	keyPairs kps.KeyPairService
	tasks    kps.TaskService
	servers  kps.ServerService
	audit    kps.AuditReader
	drift    kps.DriftService
	rotate   kps.RotationService
	lists    *tasklist.Lists
	auth     *api.Authenticator
	errs     *api.Errors
	mux      *api.Mux
}

// Services are what the KPS v3 handlers act through.
type Services struct {
	KeyPairs kps.KeyPairService
	Tasks    kps.TaskService
	Servers  kps.ServerService
	// Audit reads the project's audit trail; nil: the route answers 404.
	Audit kps.AuditReader
	// Drift runs the drift checks of §7.2 (an OpenKPS extension); nil leaves their routes out.
	Drift kps.DriftService
	// Rotations serves the rotations extension (§8); nil leaves its routes out.
	Rotations kps.RotationService
	// Lists renders the running and failed task lists.
	Lists *tasklist.Lists
}

// New returns the KPS v3 API on services, authenticating with auth and rendering errors with
// errs.
func New(services Services, auth *api.Authenticator, errs *api.Errors) *API {
	a := &API{keyPairs: services.KeyPairs, tasks: services.Tasks, servers: services.Servers, audit: services.Audit, drift: services.Drift, rotate: services.Rotations, lists: services.Lists,
		auth: auth, errs: errs, mux: api.NewMux()}
	a.routes()
	return a
}

// ErrorBody is the KPS error body (§1.5).
func ErrorBody(_ int, code, msg string) any { return api.CodeBody{ErrorCode: code, ErrorMsg: msg} }

func (a *API) routes() {
	route := func(pattern string, min kps.Role, h handlerFunc) {
		a.mux.Handle(pattern, a.authorized(min, false, nil, func(w http.ResponseWriter, r *http.Request, p *kps.Principal, _ *kps.RequestReads) error {
			return h(w, r, p)
		}))
	}
	// A route that changes something (or hands out a private key) is audited
	// (docs/spec/audit.md): its action, its status of success, what it acts on.
	audited := func(pattern string, min kps.Role, ar api.AuditRoute, h handlerFunc) {
		a.mux.Handle(pattern, a.authorized(min, false, &ar, func(w http.ResponseWriter, r *http.Request, p *kps.Principal, _ *kps.RequestReads) error {
			return h(w, r, p)
		}))
	}
	ok, created, empty := http.StatusOK, http.StatusCreated, http.StatusNoContent
	audited("POST /v3/{project_id}/servers", kps.RoleMember, api.AuditRoute{Action: kps.ActionServerCreate, Status: created, Target: kps.TargetServer}, a.createServer)
	route("GET /v3/{project_id}/servers", kps.RoleReader, a.listServers)
	route("GET /v3/{project_id}/servers/{server_id}", kps.RoleReader, a.showServer)
	audited("PUT /v3/{project_id}/servers/{server_id}", kps.RoleMember, api.AuditRoute{Action: kps.ActionServerUpdate, Status: ok, Target: kps.TargetServer, PathTarget: "server_id"}, a.updateServer)
	audited("DELETE /v3/{project_id}/servers/{server_id}", kps.RoleMember, api.AuditRoute{Action: kps.ActionServerDelete, Status: empty, Target: kps.TargetServer, PathTarget: "server_id"}, a.deleteServer)

	audited("POST /v3/{project_id}/keypairs", kps.RoleMember, api.AuditRoute{Action: kps.ActionKeyPairCreate, Status: ok, Target: kps.TargetKeyPair}, a.createKeyPair)
	route("GET /v3/{project_id}/keypairs", kps.RoleReader, a.listKeyPairs)
	route("GET /v3/{project_id}/keypairs/{keypair_name}", kps.RoleReader, a.showKeyPair)
	audited("PUT /v3/{project_id}/keypairs/{keypair_name}", kps.RoleMember, api.AuditRoute{Action: kps.ActionKeyPairUpdate, Status: ok, Target: kps.TargetKeyPair, PathTarget: "keypair_name"}, a.updateKeyPair)
	audited("DELETE /v3/{project_id}/keypairs/{keypair_name}", kps.RoleMember, api.AuditRoute{Action: kps.ActionKeyPairDelete, Status: empty, Target: kps.TargetKeyPair, PathTarget: "keypair_name"}, a.deleteKeyPair)

	audited("POST /v3/{project_id}/keypairs/batch-import", kps.RoleMember, api.AuditRoute{Action: kps.ActionKeyPairCreate, Status: ok, Target: kps.TargetKeyPair}, a.batchImportKeyPairs)
	audited("POST /v3/{project_id}/keypairs/private-key/import", kps.RoleMember, api.AuditRoute{Action: kps.ActionPrivateKeyImport, Status: ok, Target: kps.TargetKeyPair}, a.importPrivateKey)
	audited("POST /v3/{project_id}/keypairs/private-key/export", kps.ExportRole, api.AuditRoute{Action: kps.ActionPrivateKeyExport, Status: ok, Target: kps.TargetKeyPair}, a.exportPrivateKey)
	audited("POST /v3/{project_id}/keypairs/private-key/batch-export", kps.ExportRole, api.AuditRoute{Action: kps.ActionPrivateKeyExport, Status: ok, Target: kps.TargetKeyPair}, a.batchExportPrivateKeys)
	audited("DELETE /v3/{project_id}/keypairs/{keypair_name}/private-key", kps.RoleMember, api.AuditRoute{Action: kps.ActionPrivateKeyClear, Status: ok, Target: kps.TargetKeyPair, PathTarget: "keypair_name"}, a.clearPrivateKey)
	audited("POST /v3/{project_id}/keypairs/associate", kps.RoleMember, api.AuditRoute{Action: kps.ActionKeyPairAssociate, Status: ok, Target: kps.TargetServer}, a.associate)
	audited("POST /v3/{project_id}/keypairs/batch-associate", kps.RoleMember, api.AuditRoute{Action: kps.ActionKeyPairBatchAssociate, Status: ok, Target: kps.TargetKeyPair}, a.batchAssociate)
	audited("POST /v3/{project_id}/keypairs/disassociate", kps.RoleMember, api.AuditRoute{Action: kps.ActionKeyPairDisassociate, Status: ok, Target: kps.TargetServer}, a.disassociate)
	route("GET /v3/{project_id}/tasks/{task_id}", kps.RoleReader, a.showTask)
	// The lists read ahead: their page cache is keyed on the task version the request read
	// with its authentication, in one round trip (kps.RequestReads).
	a.mux.Handle("GET /v3/{project_id}/running-tasks", a.authorized(kps.RoleReader, true, nil, a.listRunningTasks))
	a.mux.Handle("GET /v3/{project_id}/failed-tasks", a.authorized(kps.RoleReader, true, nil, a.listFailedTasks))
	audited("DELETE /v3/{project_id}/failed-tasks/{task_id}", kps.RoleMember, api.AuditRoute{Action: kps.ActionFailedTaskDelete, Status: ok, Target: kps.TargetTask, PathTarget: "task_id"}, a.deleteFailedTask)
	audited("DELETE /v3/{project_id}/failed-tasks", kps.RoleMember, api.AuditRoute{Action: kps.ActionFailedTasksDelete, Status: ok, Target: kps.TargetProject, PathTarget: "project_id"}, a.deleteFailedTasks)
	if a.audit != nil {
		route("GET /v3/{project_id}/audit-events", kps.RoleAdmin, a.listAuditEvents)
	}
	// Drift checks (§7.2, an OpenKPS extension): starting one logs in to hosts with the stored
	// credentials, as a bind does.
	if a.drift != nil {
		audited("POST /v3/{project_id}/drift-checks", kps.RoleMember, api.AuditRoute{Action: kps.ActionDriftCheck, Status: ok, Target: kps.TargetDriftCheck}, a.startDriftCheck)
		route("GET /v3/{project_id}/drift-checks", kps.RoleReader, a.listDriftChecks)
		route("GET /v3/{project_id}/drift-checks/{check_id}", kps.RoleReader, a.showDriftCheck)
	}
	if a.rotate != nil {
		a.rotationRoutes(route, audited)
	}
}

// Routes are the patterns the family registered.
func (a *API) Routes() []string { return a.mux.Patterns() }

// ServeHTTP serves the KPS v3 routes; another path or method under /v3/{project_id} is 404
// KPS.6205 or 405 KPS.6206, decided before authentication (§1.4).
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer api.Recover(w, r, a.fail)
	api.Serve(a.mux.ServeMux, w, r, a.fail)
}

// fail renders err in the KPS body.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	a.errs.Render(w, r, err, ErrorBody)
}

// handlerFunc is a KPS handler: it receives the authenticated principal and returns an error
// for the one renderer.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p *kps.Principal) error

// readAheadFunc is a handler that also receives the reads its request made with its
// authentication.
type readAheadFunc func(w http.ResponseWriter, r *http.Request, p *kps.Principal, reads *kps.RequestReads) error

// authorized authenticates the request for its path project and requires role min (auth.md
// §4.2–4.3, §3.3). An audited route (ar not nil) gives the caller's principal the request's
// audit event, and records what the call's transactions did not (api.AuditOutcome).
func (a *API) authorized(min kps.Role, readAhead bool, ar *api.AuditRoute, h readAheadFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		project := r.PathValue("project_id")
		p, reads, err := a.auth.Require(r, api.Target{Project: project, ReadAhead: readAhead}, min)
		var ev *kps.AuditEvent
		if ar != nil {
			ev = a.auth.AuditEvent(r, p, *ar, project)
			p = api.Audited(p, ev)
		}
		if err == nil {
			err = h(w, r, p, reads)
		}
		if ar != nil {
			a.auth.AuditOutcome(r, ev, err, api.HTTPStatus(kps.ErrorCode(err)))
		}
		if err != nil {
			a.fail(w, r, err)
		}
	})
}

// readObject reads a request body that must be a JSON object (§1.4).
func readObject(r *http.Request) (api.Object, error) { return api.ReadObject(r, api.MaxBody) }

// pageQuery reads limit/offset (§4.1); either given twice is refused (§1.4).
func pageQuery(r *http.Request) (kps.Page, error) {
	q, err := api.QueryOnce(r, "limit", "offset")
	if err != nil {
		return kps.Page{}, err
	}
	_, hasLimit := q["limit"]
	_, hasOffset := q["offset"]
	return kps.ParsePage(q.Get("limit"), hasLimit, q.Get("offset"), hasOffset, 1000)
}
