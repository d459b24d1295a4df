// Package kps is the domain of OpenKPS, a self-hostable SSH Key Pair Service that speaks the
// HTTP API of Huawei Cloud's KPS v3. It holds the domain types and their validation (keypair.go,
// server.go, task.go, identity.go), the error codes (errors.go), the task state machine
// (task.go), and the interfaces the implementation packages satisfy: the stores and the
// services (service.go), the read paths (readpath.go), the lockout limiter (lockout.go). It
// imports nothing from this repository; every other package may import it.
package kps

import (
	"errors"
	"fmt"
)

// Error codes of kps-v3-api.md §5 and auth.md §11.3. The HTTP status of each code is decided in
// one table of the api package. KPS.6110 and KPS.6111 are defined by this project for the
// management routes of auth.md §9, for which the specification names no not-found or conflict
// code.
const (
	ErrBadJSON          = "KPS.6001"
	ErrMissing          = "KPS.6002"
	ErrInvalid          = "KPS.6003"
	ErrKeyPairName      = "KPS.6004"
	ErrLimit            = "KPS.6005"
	ErrOffset           = "KPS.6006"
	ErrMarker           = "KPS.6007"
	ErrBatchSize        = "KPS.6008"
	ErrPublicKey        = "KPS.6009"
	ErrPrivateKey       = "KPS.6010"
	ErrX509NotBindable  = "KPS.6011"
	ErrBatchKeyPairs    = "KPS.6012"
	ErrDuplicate        = "KPS.6013"
	ErrAuth             = "KPS.6014"
	ErrPort             = "KPS.6015"
	ErrDescription      = "KPS.6016"
	ErrEncryption       = "KPS.6017"
	ErrNoPrivateKey     = "KPS.6018"
	ErrContentType      = "KPS.6019"
	ErrTooLarge         = "KPS.6020"
	ErrNoCredential     = "KPS.6021"
	ErrUnauthenticated  = "KPS.6101"
	ErrBadCredentials   = "KPS.6102"
	ErrProjectMismatch  = "KPS.6103"
	ErrUserMismatch     = "KPS.6104"
	ErrLockedOut        = "KPS.6105"
	ErrIdentityDown     = "KPS.6106"
	ErrLoginFailed      = "KPS.6107"
	ErrScope            = "KPS.6108"
	ErrTokenNotFound    = "KPS.6109"
	ErrIdentityNotFound = "KPS.6110" // 404: no such domain, project, user, role assignment or access key
	ErrIdentityConflict = "KPS.6111" // 409: identity name taken, or the default project refuses the change
	ErrKeyPairNotFound  = "KPS.6201"
	ErrTaskNotFound     = "KPS.6202"
	ErrFailedNotFound   = "KPS.6203"
	ErrServerNotFound   = "KPS.6204"
	ErrNoRoute          = "KPS.6205"
	ErrMethod           = "KPS.6206"
	ErrKeyPairExists    = "KPS.6301"
	ErrServerBusy       = "KPS.6302"
	ErrServerBound      = "KPS.6303"
	ErrServerNotBound   = "KPS.6304"
	ErrKeyPairInUse     = "KPS.6305"
	ErrServerExists     = "KPS.6306"
	ErrQuota            = "KPS.6401"
	ErrServerQuota      = "KPS.6402" // 403: the project holds the most servers one project may register
	ErrProjectTasks     = "KPS.6403" // 429: the project has the most queued or running tasks one project may have
	ErrInternal         = "KPS.6501"
	ErrUnavailable      = "KPS.6502"
	ErrForbidden        = "KPS.9006"
	TaskUnreachable     = "KPS.6601"
	TaskTimeout         = "KPS.6602"
	TaskAuthFailed      = "KPS.6603"
	TaskHostKeyMismatch = "KPS.6604"
	TaskWriteFailed     = "KPS.6605"
	TaskSSHDConfig      = "KPS.6606"
	TaskPrivileges      = "KPS.6607"
	TaskNoUser          = "KPS.6608"
	TaskInterrupted     = "KPS.6609"
	TaskRemoteFailed    = "KPS.6610"
)

// Codes of the rules that keep a stored credential or hosted key where an admin sent it
// (docs/SECURITY.md §1–2, kps-v3-api.md §5.2).
const (
	ErrPortOverride       = "KPS.6022" // 400: server.port refused (stored credential or hosted key login, or no pinned host key)
	ErrTargetNotAllowed   = "KPS.6023" // 400: address and port outside the operator's --allowed-targets
	ErrHostedKeyForbidden = "KPS.6024" // 403: the login would be the hosted key of a key pair the caller may not export
	ErrUnconfirmedReach   = "KPS.6025" // 409: a stored secret would go, on first use, to a reach no admin set
)

// Error is a failure the caller can act on: a KPS code and a one-sentence message that never
// contains a secret. Anything that is not an *Error is an internal error.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the KPS code of err, or ErrInternal when err carries none.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ErrInternal
}

// ErrorMessage returns the caller-facing message of err; internal errors get a generic one so
// that no detail leaks.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "Internal error."
}

// KeyPairNotFound is KPS.6201 for a key pair that does not exist or is not visible to the
// caller: both answer alike (kps-v3-api.md §1.2).
func KeyPairNotFound(name string) *Error {
	return Errorf(ErrKeyPairNotFound, "Key pair '%s' does not exist.", name)
}

// ServerNotFound is KPS.6204.
func ServerNotFound(id string) *Error {
	return Errorf(ErrServerNotFound, "Server '%s' does not exist.", id)
}

// ErrLeaseLost is returned by guarded task transitions when the worker no longer holds the task.
var ErrLeaseLost = errors.New("task lease lost")
