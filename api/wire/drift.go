package wire

import kps "github.com/openkps/kps"

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

// DriftResult is what a check found on one server, and DriftKey a key of authorized_keys
// nobody manages: the domain's own types, which carry the wire's JSON names (they are stored
// as JSON too).
type (
	DriftResult = kps.DriftResult
	DriftKey    = kps.DriftKey
)

// DriftCheckResponse wraps one check.
type DriftCheckResponse struct {
	DriftCheck DriftCheck `json:"drift_check"`
}

// DriftChecksResponse is a page of checks, without their results.
type DriftChecksResponse struct {
	DriftChecks []DriftCheck `json:"drift_checks"`
	Total       int          `json:"total"`
}
