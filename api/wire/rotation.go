package wire

// The bodies of the rotations extension (kps-v3-api.md §8), shared by the handlers and the Go
// client.

// RotationCreate is the body of POST /v3/{project_id}/rotations.
type RotationCreate struct {
	Rotation RotationRequest `json:"rotation"`
}

// RotationRequest is what a rotation is asked to do.
type RotationRequest struct {
	KeyPairName string   `json:"keypair_name"`
	Servers     []string `json:"servers,omitempty"`
	FromKeyPair string   `json:"from_keypair,omitempty"`
	BatchSize   int      `json:"batch_size,omitempty"`
	MaxFailures int      `json:"max_failures,omitempty"`
	Canary      int      `json:"canary,omitempty"`
	// PrivateKey is the target key pair's private key to verify the new logins with; it is
	// sealed at once and never returned.
	PrivateKey string `json:"private_key,omitempty"`
	// Auth is the caller's credential for the hosts (the tasks are then REPLACEs); absent: the
	// service logs in with what it holds (RESETs). Sealed until the rotation ends.
	Auth         *RotationAuth `json:"auth,omitempty"`
	KeepLoginKey bool          `json:"keep_login_key,omitempty"`
}

// RotationAuth is a login credential: type "password" or "keypair", and the secret.
type RotationAuth struct {
	Type string `json:"type"`
	Key  string `json:"key"`
}

// RotationBody wraps one rotation: the answer of create, show and action.
type RotationBody struct {
	Rotation Rotation `json:"rotation"`
}

// RotationList is the answer of GET /v3/{project_id}/rotations.
type RotationList struct {
	Total     int        `json:"total"`
	Rotations []Rotation `json:"rotations"`
}

// Rotation is a rotation as the service shows it; Servers only in show, create and action.
type Rotation struct {
	ID          string           `json:"id"`
	KeyPairName string           `json:"keypair_name"`
	FromKeyPair string           `json:"from_keypair,omitempty"`
	State       string           `json:"state"`
	Reason      string           `json:"reason,omitempty"`
	BatchSize   int              `json:"batch_size"`
	MaxFailures int              `json:"max_failures"`
	Canary      int              `json:"canary"`
	UserID      string           `json:"user_id"`
	Created     string           `json:"created"` // RFC 3339, UTC
	Updated     string           `json:"updated"`
	Totals      RotationTotals   `json:"totals"`
	Servers     []RotationServer `json:"servers,omitempty"`
}

// RotationTotals counts a rotation's servers per state.
type RotationTotals struct {
	Servers   int `json:"servers"`
	Pending   int `json:"pending"`
	Running   int `json:"running"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
}

// RotationServer is one server of a rotation.
type RotationServer struct {
	ServerID  string `json:"server_id"`
	State     string `json:"state"`
	TaskID    string `json:"task_id,omitempty"`
	Attempts  int    `json:"attempts"`
	ErrorCode string `json:"error_code,omitempty"`
	ErrorMsg  string `json:"error_msg,omitempty"`
}

// RotationAction is the body of POST …/rotations/{id}/action.
type RotationAction struct {
	Action string `json:"action"`
}
