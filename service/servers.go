package service

import (
	"context"
	"encoding/json"

	"github.com/google/uuid"

	"github.com/openkps/kps"
)

// CreateServer implements kps.ServerService: a server with the inventory's defaults, u applied,
// registered under the project's quota. A member's server is never trusted on first use with a
// stored credential or hosted key until an admin confirms where it points
// (kps.Server.CheckLogin), so ReachByAdmin says who registered it.
func (s *Service) CreateServer(ctx context.Context, p *kps.Principal, id string, u kps.ServerUpdate, cred *kps.Credential) (*kps.Server, error) {
	if u.SetCredential && !p.Has(kps.RoleAdmin) {
		// A stored credential lets anyone who may bind run a RESET on the host (inventory.md).
		return nil, forbidden()
	}
	if u.Address == nil {
		return nil, kps.MissingParameter("server.address")
	}
	if id == "" {
		id = uuid.NewString()
	}
	srv := &kps.Server{ProjectID: p.ProjectID, ID: id, Name: id, Port: 22, User: "root", SSHDConfig: kps.DefaultSSHDConfig}
	if err := s.sealCredential(&u, p.ProjectID, id, cred); err != nil {
		return nil, err
	}
	u.Apply(srv)
	srv.ReachByAdmin = p.Has(kps.RoleAdmin)
	if err := srv.Validate(); err != nil {
		return nil, err
	}
	if err := s.cfg.AllowedTargets.CheckServer(srv.Address, srv.Port); err != nil {
		return nil, err
	}
	if err := s.store.CreateServer(ctx, srv, s.cfg.ServerQuota); err != nil {
		return nil, err
	}
	return srv, nil
}

// UpdateServer implements kps.ServerService. Only a project admin changes how the service
// reaches a server (address, port, user, host keys, sshd_config) or its stored credential:
// otherwise a member could aim a stored credential, a hosted key or another caller's password
// at a host of their own (docs/SECURITY.md 1.1). A member's update that repeats them unchanged
// (an inventory imported again) writes none of them.
func (s *Service) UpdateServer(ctx context.Context, p *kps.Principal, id string, u kps.ServerUpdate, cred *kps.Credential) (*kps.Server, error) {
	if u.SetCredential && !p.Has(kps.RoleAdmin) {
		return nil, forbidden()
	}
	cur, err := s.store.Server(ctx, p.ProjectID, id)
	if err != nil {
		return nil, err
	}
	if !p.Has(kps.RoleAdmin) {
		if u.ChangesReach(cur) {
			return nil, kps.Errorf(kps.ErrForbidden, "Changing how the service reaches a server (address, port, user, host_keys, sshd_config) needs the admin role on the project.")
		}
		u.DropReach()
	} else {
		u.ReachByAdmin = u.NamesReach()
	}
	next := *cur
	u.Apply(&next)
	if err := next.Validate(); err != nil {
		return nil, err
	}
	if u.Address != nil || u.Port != nil {
		if err := s.cfg.AllowedTargets.CheckServer(next.Address, next.Port); err != nil {
			return nil, err
		}
	}
	if err := s.sealCredential(&u, p.ProjectID, id, cred); err != nil {
		return nil, err
	}
	return s.store.UpdateServer(ctx, p.ProjectID, id, u)
}

// sealCredential puts cred, sealed to its server, in u when u sets the credential (nil
// removes it).
func (s *Service) sealCredential(u *kps.ServerUpdate, projectID, serverID string, cred *kps.Credential) error {
	if !u.SetCredential || cred == nil {
		u.Credential = nil
		return nil
	}
	plain, err := json.Marshal(cred)
	if err != nil {
		return err
	}
	u.Credential, err = s.sealer.Seal(plain, kps.CredentialAAD(projectID, serverID))
	return err
}

// Server implements kps.ServerService.
func (s *Service) Server(ctx context.Context, p *kps.Principal, id string) (*kps.Server, error) {
	return s.store.Server(ctx, p.ProjectID, id)
}

// ListServers implements kps.ServerService.
func (s *Service) ListServers(ctx context.Context, p *kps.Principal, pg kps.Page) ([]kps.Server, int, error) {
	return s.store.ListServers(ctx, p.ProjectID, pg)
}

// DeleteServer implements kps.ServerService.
func (s *Service) DeleteServer(ctx context.Context, p *kps.Principal, id string) error {
	return s.store.DeleteServer(ctx, p.ProjectID, id)
}
