package keystone

import (
	"net/http"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
)

// The management routes of auth.md §9: users, projects, role assignments and domains. Bodies
// are Keystone's (requests.go); who may do what is the manager's decision.

// createUser is POST /v3/users: 201 {"user": …}, never with the password.
func (a *API) createUser(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	var req userCreate
	if err := readRequest(r, "user", &req); err != nil {
		return err
	}
	u := req.user()
	if err := a.manager.CreateUser(r.Context(), p, &u, deref(req.Password, "")); err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusCreated, map[string]any{"user": a.user(u)})
	return nil
}

// updateUser is PATCH /v3/users/{user_id}: name, enabled, description, default_project_id (""
// removes it) and password.
func (a *API) updateUser(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	var req userUpdate
	if err := readRequest(r, "user", &req); err != nil {
		return err
	}
	u, err := a.manager.UpdateUser(r.Context(), p, r.PathValue("user_id"), req.UserUpdate, req.Password)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"user": a.user(*u)})
	return nil
}

// changePassword is POST /v3/users/{user_id}/password: 204; every token of the user dies. A
// refusal is logged like a refused login (auth.md §12.5).
func (a *API) changePassword(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	var req passwordChange
	err := readRequest(r, "user", &req)
	if err == nil {
		err = a.manager.ChangePassword(r.Context(), p, r.PathValue("user_id"), req.Original, req.Password, a.auth.Proxies.ClientIP(r))
	}
	if err != nil {
		a.auth.LogRefusal(r, "password change refused", err)
		return err
	}
	api.WriteEmpty(w, http.StatusNoContent)
	return nil
}

// createProject is POST /v3/projects: 201 {"project": …}.
func (a *API) createProject(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	var req projectCreate
	if err := readRequest(r, "project", &req); err != nil {
		return err
	}
	pr := req.project()
	if err := a.manager.CreateProject(r.Context(), p, &pr); err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusCreated, map[string]any{"project": a.project(pr)})
	return nil
}

// updateProject is PATCH /v3/projects/{project}: name, enabled and description.
func (a *API) updateProject(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	return a.patch(w, r, "project", func(c patch) (any, error) {
		pr, err := a.manager.UpdateProject(r.Context(), p, r.PathValue("project"),
			kps.ProjectUpdate{Name: c.Name, Enabled: c.Enabled, Description: c.Description})
		if err != nil {
			return nil, err
		}
		return a.project(*pr), nil
	})
}

// updateDomain is PATCH /v3/domains/{domain_id}: name, enabled and description.
func (a *API) updateDomain(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	return a.patch(w, r, "domain", func(c patch) (any, error) {
		d, err := a.manager.UpdateDomain(r.Context(), p, r.PathValue("domain_id"),
			kps.DomainUpdate{Name: c.Name, Enabled: c.Enabled, Description: c.Description})
		if err != nil {
			return nil, err
		}
		return a.domain(*d), nil
	})
}

// patch reads the PATCH body of a project or domain (key), applies it and answers 200 with
// what apply returns.
func (a *API) patch(w http.ResponseWriter, r *http.Request, key string, apply func(patch) (any, error)) error {
	var req patch
	if err := readRequest(r, key, &req); err != nil {
		return err
	}
	view, err := apply(req)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{key: view})
	return nil
}

// createDomain is POST /v3/domains: 201 {"domain": …}; the domain comes with its default
// project named after the region (auth.md §3.2).
func (a *API) createDomain(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	var req domainCreate
	if err := readRequest(r, "domain", &req); err != nil {
		return err
	}
	d := kps.Domain{Name: req.Name, Enabled: deref(req.Enabled, true), Description: deref(req.Description, "")}
	if _, err := a.manager.CreateDomain(r.Context(), p, &d); err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusCreated, map[string]any{"domain": a.domain(d)})
	return nil
}

// The deletions and role assignments have no body: 204 on success.

func (a *API) deleteUser(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	return noContent(w, a.manager.DeleteUser(r.Context(), p, r.PathValue("user_id")))
}

func (a *API) deleteProject(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	return noContent(w, a.manager.DeleteProject(r.Context(), p, r.PathValue("project")))
}

// deleteDomain deletes a disabled domain.
func (a *API) deleteDomain(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	return noContent(w, a.manager.DeleteDomain(r.Context(), p, r.PathValue("domain_id")))
}

// grantRole is PUT /v3/projects/{project}/users/{user_id}/roles/{role_id} and PUT
// /v3/domains/{domain_id}/users/{user_id}/roles/{role_id}.
func (a *API) grantRole(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	return noContent(w, a.manager.GrantRole(r.Context(), p, assignment(r)))
}

// revokeRole is the DELETE of the same paths.
func (a *API) revokeRole(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	return noContent(w, a.manager.RevokeRole(r.Context(), p, assignment(r)))
}

// assignment is the role assignment named by a role route's path; {role_id} may hold the
// role's ID or its name.
func assignment(r *http.Request) kps.RoleAssignment {
	return kps.RoleAssignment{UserID: r.PathValue("user_id"), Role: kps.Role(r.PathValue("role_id")),
		ProjectID: r.PathValue("project"), DomainID: r.PathValue("domain_id")}
}

// noContent answers 204 unless err refuses the request.
func noContent(w http.ResponseWriter, err error) error {
	if err != nil {
		return err
	}
	api.WriteEmpty(w, http.StatusNoContent)
	return nil
}
