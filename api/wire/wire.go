// Package wire holds the JSON bodies the HTTP API answers with that its Go client (client/)
// reads too: one definition for the handlers that write them (api/kpsv3, api/keystone) and the
// client that decodes them. It imports only the domain, for the few types whose JSON is the
// wire's own (a drift result).
package wire

import "encoding/json"

// KeyPairCreated is CreateKeypairResp (kps-v3-api.md §2.1); PrivateKey is set only when the
// service generated the key pair, and only in this answer.
type KeyPairCreated struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	PublicKey   string `json:"public_key"`
	PrivateKey  string `json:"private_key,omitempty"`
	Fingerprint string `json:"fingerprint"`
	UserID      string `json:"user_id"`
}

// KeyPairItem is the Keypair of a list (§2.2); frozen_state is a string here.
type KeyPairItem struct {
	Name            string `json:"name"`
	Type            string `json:"type"`
	Scope           string `json:"scope"`
	PublicKey       string `json:"public_key"`
	Fingerprint     string `json:"fingerprint"`
	IsKeyProtection bool   `json:"is_key_protection"`
	FrozenState     string `json:"frozen_state"`
}

// KeyPairDetail is KeypairDetail (§2.3); frozen_state is an integer here.
type KeyPairDetail struct {
	Name            string `json:"name"`
	ID              int64  `json:"id"`
	Type            string `json:"type"`
	Scope           string `json:"scope"`
	PublicKey       string `json:"public_key"`
	Fingerprint     string `json:"fingerprint"`
	IsKeyProtection bool   `json:"is_key_protection"`
	Deleted         bool   `json:"deleted"`
	Description     string `json:"description"`
	UserID          string `json:"user_id"`
	CreateTime      int64  `json:"create_time"`
	UpdateTime      int64  `json:"update_time"`
	FrozenState     int32  `json:"frozen_state"`
	Algorithm       string `json:"algorithm"`
}

// Server is an inventory record as the service shows it (inventory.md); the credential never
// appears, only whether one is stored.
type Server struct {
	ID               string   `json:"id"`
	Name             string   `json:"name"`
	Address          string   `json:"address"`
	Port             int      `json:"port"`
	User             string   `json:"user"`
	HostKeys         []string `json:"host_keys"`
	SSHDConfig       string   `json:"sshd_config"`
	HasCredential    bool     `json:"has_credential"`
	ReachByAdmin     bool     `json:"reach_by_admin"`
	KeyPairName      string   `json:"keypair_name"`
	PasswordDisabled bool     `json:"password_disabled"`
	// OpenKPS extensions (kps-v3-api.md §7): when the binding expires (RFC 3339, absent when
	// it does not), when the last drift check read the server (epoch ms, 0: never) and what
	// it found.
	BindingExpiresAt string          `json:"binding_expires_at,omitempty"`
	LastDriftCheck   int64           `json:"last_drift_check"`
	Drift            json.RawMessage `json:"drift"`
	CreateTime       int64           `json:"create_time"`
	UpdateTime       int64           `json:"update_time"`
	// LastTask is the server's newest task the service still keeps (an OpenKPS inventory
	// extension, inventory.md), null when it keeps none. Read-only.
	LastTask *ServerTask `json:"last_task"`
}

// ServerTask is a server's last task: its ID, status (SUCCESS_RESET), creation time (epoch
// ms) and, when it failed, its error code.
type ServerTask struct {
	ID         string `json:"id"`
	TaskStatus string `json:"task_status"`
	CreateTime int64  `json:"create_time"`
	ErrorCode  string `json:"error_code,omitempty"`
}

// User is a Keystone user (auth.md §9); it never carries the password or its hash.
type User struct {
	ID                string  `json:"id"`
	Name              string  `json:"name"`
	DomainID          string  `json:"domain_id"`
	Enabled           bool    `json:"enabled"`
	Description       string  `json:"description"`
	DefaultProjectID  string  `json:"default_project_id,omitempty"`
	PasswordExpiresAt *string `json:"password_expires_at"`
	Links             Link    `json:"links"`
}

// Link is the links member of a Keystone entity.
type Link struct {
	Self string `json:"self"`
}
