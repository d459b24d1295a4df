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
	lists    *tasklist.Lists
	auth     *api.Authenticator
	errs     *api.Errors
	mux      *http.ServeMux
}

// Services are what the KPS v3 handlers act through.
type Services struct {
	KeyPairs kps.KeyPairService
	Tasks    kps.TaskService
	Servers  kps.ServerService
	// Lists renders the running and failed task lists.
	Lists *tasklist.Lists
}

// New returns the KPS v3 API on services, authenticating with auth and rendering errors with
// errs.
func New(services Services, auth *api.Authenticator, errs *api.Errors) *API {
	a := &API{keyPairs: services.KeyPairs, tasks: services.Tasks, servers: services.Servers, lists: services.Lists,
		auth: auth, errs: errs, mux: http.NewServeMux()}
	a.routes()
	return a
}

// ErrorBody is the KPS error body (§1.5).
func ErrorBody(_ int, code, msg string) any { return api.CodeBody{ErrorCode: code, ErrorMsg: msg} }

func (a *API) routes() {
	route := func(pattern string, min kps.Role, h handlerFunc) {
		a.mux.Handle(pattern, a.authorized(min, false, func(w http.ResponseWriter, r *http.Request, p *kps.Principal, _ *kps.RequestReads) error {
			return h(w, r, p)
		}))
	}
	route("POST /v3/{project_id}/servers", kps.RoleMember, a.createServer)
	route("GET /v3/{project_id}/servers", kps.RoleReader, a.listServers)
	route("GET /v3/{project_id}/servers/{server_id}", kps.RoleReader, a.showServer)
	route("PUT /v3/{project_id}/servers/{server_id}", kps.RoleMember, a.updateServer)
	route("DELETE /v3/{project_id}/servers/{server_id}", kps.RoleMember, a.deleteServer)

	route("POST /v3/{project_id}/keypairs", kps.RoleMember, a.createKeyPair)
	route("GET /v3/{project_id}/keypairs", kps.RoleReader, a.listKeyPairs)
	route("GET /v3/{project_id}/keypairs/{keypair_name}", kps.RoleReader, a.showKeyPair)
	route("PUT /v3/{project_id}/keypairs/{keypair_name}", kps.RoleMember, a.updateKeyPair)
	route("DELETE /v3/{project_id}/keypairs/{keypair_name}", kps.RoleMember, a.deleteKeyPair)

	route("POST /v3/{project_id}/keypairs/batch-import", kps.RoleMember, a.batchImportKeyPairs)
	route("POST /v3/{project_id}/keypairs/private-key/import", kps.RoleMember, a.importPrivateKey)
	route("POST /v3/{project_id}/keypairs/private-key/export", kps.ExportRole, a.exportPrivateKey)
	route("POST /v3/{project_id}/keypairs/private-key/batch-export", kps.ExportRole, a.batchExportPrivateKeys)
	route("DELETE /v3/{project_id}/keypairs/{keypair_name}/private-key", kps.RoleMember, a.clearPrivateKey)
	route("POST /v3/{project_id}/keypairs/associate", kps.RoleMember, a.associate)
	route("POST /v3/{project_id}/keypairs/batch-associate", kps.RoleMember, a.batchAssociate)
	route("POST /v3/{project_id}/keypairs/disassociate", kps.RoleMember, a.disassociate)
	route("GET /v3/{project_id}/tasks/{task_id}", kps.RoleReader, a.showTask)
	// The lists read ahead: their page cache is keyed on the task version the request read
	// with its authentication, in one round trip (kps.RequestReads).
	a.mux.Handle("GET /v3/{project_id}/running-tasks", a.authorized(kps.RoleReader, true, a.listRunningTasks))
	a.mux.Handle("GET /v3/{project_id}/failed-tasks", a.authorized(kps.RoleReader, true, a.listFailedTasks))
	route("DELETE /v3/{project_id}/failed-tasks/{task_id}", kps.RoleMember, a.deleteFailedTask)
	route("DELETE /v3/{project_id}/failed-tasks", kps.RoleMember, a.deleteFailedTasks)
}

// ServeHTTP serves the KPS v3 routes; another path or method under /v3/{project_id} is 404
// KPS.6205 or 405 KPS.6206, decided before authentication (§1.4).
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer api.Recover(w, r, a.fail)
	api.Serve(a.mux, w, r, a.fail)
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
// §4.2–4.3, §3.3).
func (a *API) authorized(min kps.Role, readAhead bool, h readAheadFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, reads, err := a.auth.Require(r, api.Target{Project: r.PathValue("project_id"), ReadAhead: readAhead}, min)
		if err == nil {
			err = h(w, r, p, reads)
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
