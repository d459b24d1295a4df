package wire

// The drift checks of kps-v3-api.md §7.2 (an OpenKPS extension).

// DriftCheck is a drift check: its state, the servers it read and, when shown alone, what it
// found on each.
type DriftCheck struct {
	ID         string        `json:"id"`
	Status     string        `json:"status"` // RUNNING, DONE or INTERRUPTED
	Scheduled  bool          `json:"scheduled"`
	Servers    []string      `json:"servers"` // as asked; empty: every server of the project
	CreateTime int64         `json:"create_time"`
	FinishTime int64         `json:"finish_time"` // 0 while RUNNING
	Summary    DriftSummary  `json:"summary"`
	Results    []DriftResult `json:"results,omitempty"`
}

// DriftSummary counts a check's results.
type DriftSummary struct {
	Checked    int `json:"checked"`
	Drifted    int `json:"drifted"`
	Unreadable int `json:"unreadable"`
}

// DriftResult is what a check found on one server.
type DriftResult struct {
	ServerID           string     `json:"server_id"`
	Checked            bool       `json:"checked"`
	ErrorCode          string     `json:"error_code,omitempty"`
	ErrorMsg           string     `json:"error_msg,omitempty"`
	Drift              bool       `json:"drift"`
	KeyPairName        string     `json:"keypair_name"`
	BoundKey           string     `json:"bound_key"`
	Unmanaged          []DriftKey `json:"unmanaged_keys"`
	UnmanagedCount     int        `json:"unmanaged_count"`
	Password           string     `json:"password_authentication"`
	PasswordExpected   string     `json:"password_expected,omitempty"`
	AuthorizedKeysFile string     `json:"authorized_keys_file,omitempty"`
	FileMode           string     `json:"file_mode,omitempty"`
	FileOwner          string     `json:"file_owner,omitempty"`
	FileProblems       []string   `json:"file_problems"`
	CheckTime          int64      `json:"check_time"`
}

// DriftKey is a key of authorized_keys nobody manages.
type DriftKey struct {
	Fingerprint string `json:"fingerprint"`
	Type        string `json:"type"`
	Comment     string `json:"comment"`
	Options     string `json:"options"`
	Line        int    `json:"line"`
}

// DriftCheckResponse wraps one check.
type DriftCheckResponse struct {
	DriftCheck DriftCheck `json:"drift_check"`
}

// DriftChecksResponse is a page of checks, without their results.
type DriftChecksResponse struct {
	DriftChecks []DriftCheck `json:"drift_checks"`
	Total       int          `json:"total"`
}
