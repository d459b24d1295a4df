package keystone

import (
	"net/http"

	"github.com/openkps/kps"
	"github.com/openkps/kps/api"
)

// The management routes of auth.md §9: users, projects, role assignments and domains. Bodies
// are Keystone's; who may do what is the manager's decision.

// createUser is POST /v3/users: 201 {"user": …}, never with the password.
func (a *API) createUser(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	o, err := readIdentityObject(r)
	if err != nil {
		return err
	}
	b, err := member(o, "user")
	if err != nil {
		return err
	}
	var u kps.User
	if u.Name, err = requiredString(b, "name"); err != nil {
		return err
	}
	domainID, err := optString(b, "domain_id")
	if err != nil {
		return err
	}
	password, err := optString(b, "password")
	if err != nil {
		return err
	}
	enabled, err := optBool(b, "enabled")
	if err != nil {
		return err
	}
	description, err := optString(b, "description")
	if err != nil {
		return err
	}
	defaultProject, err := optString(b, "default_project_id")
	if err != nil {
		return err
	}
	u.DomainID, u.Enabled = deref(domainID, ""), deref(enabled, true)
	u.Description, u.DefaultProjectID = deref(description, ""), deref(defaultProject, "")
	if err := a.manager.CreateUser(r.Context(), p, &u, deref(password, "")); err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusCreated, map[string]any{"user": a.user(u)})
	return nil
}

// updateUser is PATCH /v3/users/{user_id}: name, enabled, description, default_project_id (""
// removes it) and password.
func (a *API) updateUser(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	o, err := readIdentityObject(r)
	if err != nil {
		return err
	}
	b, err := member(o, "user")
	if err != nil {
		return err
	}
	var uu kps.UserUpdate
	if uu.Name, err = optString(b, "name"); err != nil {
		return err
	}
	if uu.Enabled, err = optBool(b, "enabled"); err != nil {
		return err
	}
	if uu.Description, err = optString(b, "description"); err != nil {
		return err
	}
	if uu.DefaultProjectID, err = optString(b, "default_project_id"); err != nil {
		return err
	}
	password, err := optString(b, "password")
	if err != nil {
		return err
	}
	u, err := a.manager.UpdateUser(r.Context(), p, r.PathValue("user_id"), uu, password)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"user": a.user(*u)})
	return nil
}

// deleteUser is DELETE /v3/users/{user_id}: 204.
func (a *API) deleteUser(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	if err := a.manager.DeleteUser(r.Context(), p, r.PathValue("user_id")); err != nil {
		return err
	}
	api.WriteEmpty(w, http.StatusNoContent)
	return nil
}

// changePassword is POST /v3/users/{user_id}/password: 204; every token of the user dies. A
// refusal is logged like a refused login (auth.md §12.5).
func (a *API) changePassword(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	err := a.changePasswordOf(w, r, p)
	if err != nil {
		a.auth.LogRefusal(r, "password change refused", err)
	}
	return err
}

func (a *API) changePasswordOf(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	o, err := readIdentityObject(r)
	if err != nil {
		return err
	}
	b, err := member(o, "user")
	if err != nil {
		return err
	}
	original, err := requiredString(b, "original_password")
	if err != nil {
		return err
	}
	password, err := requiredString(b, "password")
	if err != nil {
		return err
	}
	if err := a.manager.ChangePassword(r.Context(), p, r.PathValue("user_id"), original, password, a.auth.Proxies.ClientIP(r)); err != nil {
		return err
	}
	api.WriteEmpty(w, http.StatusNoContent)
	return nil
}

// createProject is POST /v3/projects: 201 {"project": …}. parent_id, when given, must be the
// domain (a project's parent is its domain); is_domain must be false.
func (a *API) createProject(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	o, err := readIdentityObject(r)
	if err != nil {
		return err
	}
	b, err := member(o, "project")
	if err != nil {
		return err
	}
	var pr kps.Project
	if pr.Name, err = requiredString(b, "name"); err != nil {
		return err
	}
	domainID, err := optString(b, "domain_id")
	if err != nil {
		return err
	}
	parentID, err := optString(b, "parent_id")
	if err != nil {
		return err
	}
	switch {
	case parentID != nil && domainID == nil:
		domainID = parentID
	case parentID != nil && *parentID != *domainID:
		return kps.InvalidParameter(b.Name("parent_id"))
	}
	if isDomain, err := optBool(b, "is_domain"); err != nil {
		return err
	} else if deref(isDomain, false) {
		return kps.InvalidParameter(b.Name("is_domain"))
	}
	enabled, err := optBool(b, "enabled")
	if err != nil {
		return err
	}
	description, err := optString(b, "description")
	if err != nil {
		return err
	}
	pr.DomainID, pr.Enabled, pr.Description = deref(domainID, ""), deref(enabled, true), deref(description, "")
	if err := a.manager.CreateProject(r.Context(), p, &pr); err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusCreated, map[string]any{"project": a.project(pr)})
	return nil
}

// updateProject is PATCH /v3/projects/{project}: name, enabled and description.
func (a *API) updateProject(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	o, err := readIdentityObject(r)
	if err != nil {
		return err
	}
	var u kps.ProjectUpdate
	if u.Name, u.Enabled, u.Description, err = patchMembers(o, "project"); err != nil {
		return err
	}
	pr, err := a.manager.UpdateProject(r.Context(), p, r.PathValue("project"), u)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"project": a.project(*pr)})
	return nil
}

// patchMembers reads the name, enabled and description a PATCH of a project or domain may
// change; absent members stay nil.
func patchMembers(o api.Object, kind string) (name *string, enabled *bool, description *string, err error) {
	b, err := member(o, kind)
	if err != nil {
		return nil, nil, nil, err
	}
	if name, err = optString(b, "name"); err != nil {
		return nil, nil, nil, err
	}
	if enabled, err = optBool(b, "enabled"); err != nil {
		return nil, nil, nil, err
	}
	description, err = optString(b, "description")
	return name, enabled, description, err
}

// deleteProject is DELETE /v3/projects/{project}: 204.
func (a *API) deleteProject(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	if err := a.manager.DeleteProject(r.Context(), p, r.PathValue("project")); err != nil {
		return err
	}
	api.WriteEmpty(w, http.StatusNoContent)
	return nil
}

// assignment is the role assignment named by a role route's path; {role_id} may hold the
// role's ID or its name.
func assignment(r *http.Request) kps.RoleAssignment {
	return kps.RoleAssignment{UserID: r.PathValue("user_id"), Role: kps.Role(r.PathValue("role_id")),
		ProjectID: r.PathValue("project"), DomainID: r.PathValue("domain_id")}
}

// grantRole is PUT /v3/projects/{project}/users/{user_id}/roles/{role_id} and PUT
// /v3/domains/{domain_id}/users/{user_id}/roles/{role_id}: 204.
func (a *API) grantRole(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	if err := a.manager.GrantRole(r.Context(), p, assignment(r)); err != nil {
		return err
	}
	api.WriteEmpty(w, http.StatusNoContent)
	return nil
}

// revokeRole is the DELETE of the same paths: 204.
func (a *API) revokeRole(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	if err := a.manager.RevokeRole(r.Context(), p, assignment(r)); err != nil {
		return err
	}
	api.WriteEmpty(w, http.StatusNoContent)
	return nil
}

// createDomain is POST /v3/domains: 201 {"domain": …}; the domain comes with its default
// project named after the region (auth.md §3.2).
func (a *API) createDomain(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	o, err := readIdentityObject(r)
	if err != nil {
		return err
	}
	b, err := member(o, "domain")
	if err != nil {
		return err
	}
	var d kps.Domain
	if d.Name, err = requiredString(b, "name"); err != nil {
		return err
	}
	enabled, err := optBool(b, "enabled")
	if err != nil {
		return err
	}
	description, err := optString(b, "description")
	if err != nil {
		return err
	}
	d.Enabled, d.Description = deref(enabled, true), deref(description, "")
	if _, err := a.manager.CreateDomain(r.Context(), p, &d); err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusCreated, map[string]any{"domain": a.domain(d)})
	return nil
}

// updateDomain is PATCH /v3/domains/{domain_id}: name, enabled and description.
func (a *API) updateDomain(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	o, err := readIdentityObject(r)
	if err != nil {
		return err
	}
	var u kps.DomainUpdate
	if u.Name, u.Enabled, u.Description, err = patchMembers(o, "domain"); err != nil {
		return err
	}
	d, err := a.manager.UpdateDomain(r.Context(), p, r.PathValue("domain_id"), u)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"domain": a.domain(*d)})
	return nil
}

// deleteDomain is DELETE /v3/domains/{domain_id}: 204, for a disabled domain.
func (a *API) deleteDomain(w http.ResponseWriter, r *http.Request, p *kps.Principal) error {
	if err := a.manager.DeleteDomain(r.Context(), p, r.PathValue("domain_id")); err != nil {
		return err
	}
	api.WriteEmpty(w, http.StatusNoContent)
	return nil
}
