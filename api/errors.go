package api

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/openkps/kps"
)

// statusOf is the one table that maps a KPS code to its HTTP status (kps-v3-api.md §5,
// auth.md §11.3). Codes not listed are 400 (validation) unless they are internal.
var statusOf = map[string]int{
	kps.ErrContentType:      http.StatusUnsupportedMediaType,
	kps.ErrTooLarge:         http.StatusRequestEntityTooLarge,
	kps.ErrUnauthenticated:  http.StatusUnauthorized,
	kps.ErrBadCredentials:   http.StatusUnauthorized,
	kps.ErrLoginFailed:      http.StatusUnauthorized,
	kps.ErrScope:            http.StatusUnauthorized,
	kps.ErrProjectMismatch:  http.StatusForbidden,
	kps.ErrUserMismatch:     http.StatusForbidden,
	kps.ErrForbidden:        http.StatusForbidden,
	kps.ErrQuota:            http.StatusForbidden,
	kps.ErrServerQuota:      http.StatusForbidden,
	kps.ErrProjectTasks:     http.StatusTooManyRequests,
	kps.ErrLockedOut:        http.StatusTooManyRequests,
	kps.ErrIdentityDown:     http.StatusServiceUnavailable,
	kps.ErrTokenNotFound:    http.StatusNotFound,
	kps.ErrKeyPairNotFound:  http.StatusNotFound,
	kps.ErrTaskNotFound:     http.StatusNotFound,
	kps.ErrFailedNotFound:   http.StatusNotFound,
	kps.ErrServerNotFound:   http.StatusNotFound,
	kps.ErrNoRoute:          http.StatusNotFound,
	kps.ErrIdentityNotFound: http.StatusNotFound,
	kps.ErrIdentityConflict: http.StatusConflict,
	kps.ErrMethod:           http.StatusMethodNotAllowed,
	kps.ErrKeyPairExists:    http.StatusConflict,
	kps.ErrServerBusy:       http.StatusConflict,
	kps.ErrServerBound:      http.StatusConflict,
	kps.ErrServerNotBound:   http.StatusConflict,
	kps.ErrKeyPairInUse:     http.StatusConflict,
	kps.ErrServerExists:     http.StatusConflict,
	kps.ErrInternal:         http.StatusInternalServerError,
	kps.ErrUnavailable:      http.StatusServiceUnavailable,

	// Where a stored credential or hosted key may go (docs/SECURITY.md §1–2).
	kps.ErrHostedKeyForbidden: http.StatusForbidden,
	kps.ErrUnconfirmedReach:   http.StatusConflict,
}

// HTTPStatus returns the HTTP status for a KPS code.
func HTTPStatus(code string) int {
	if s, ok := statusOf[code]; ok {
		return s
	}
	return http.StatusBadRequest
}

// ErrorBody makes a family's error body from the status and the error's KPS code and
// message: {"error_code","error_msg"} for KPS v3, Keystone's with both conventions for the
// identity routes, Nova's fault for the compute API.
type ErrorBody func(status int, code, msg string) any

// CodeBody is the plain KPS error body; both members are always non-empty (kps-v3-api.md
// §1.5). It is KPS v3's, and what a refused connection gets before any family is known.
type CodeBody struct {
	ErrorCode string `json:"error_code"`
	ErrorMsg  string `json:"error_msg"`
}

// Errors is the error core every family renders through: the status of a code, the headers a
// status needs, and the log line of an internal error. Internal errors are logged with their
// detail and shown with a generic message.
type Errors struct {
	Log *slog.Logger
	// PublicURL is the service's public base URL, named by WWW-Authenticate on a 401.
	PublicURL string
}

// Render answers err: the status of its KPS code, body of the family.
func (e *Errors) Render(w http.ResponseWriter, r *http.Request, err error, body ErrorBody) {
	code, msg := kps.ErrorCode(err), kps.ErrorMessage(err)
	status := HTTPStatus(code)
	if code == kps.ErrInternal {
		e.LogInternal(w, r, status, err)
	}
	e.Write(w, r, status, code, msg, err, body)
}

// LogInternal logs an internal error with its detail, which the answer never shows.
func (e *Errors) LogInternal(w http.ResponseWriter, r *http.Request, status int, err error) {
	e.Log.Error("internal error", "request_id", w.Header().Get("X-Request-Id"), "method", r.Method, "path", r.URL.Path,
		"status", status, "err", err)
}

// Write answers status with body(status, code, msg) and the headers the status calls for:
// WWW-Authenticate on a 401; Retry-After on a 503 or 429, from the error when it knows when
// to retry (a lockout, auth.md §12.4), else 5 seconds.
func (e *Errors) Write(w http.ResponseWriter, r *http.Request, status int, code, msg string, err error, body ErrorBody) {
	switch status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Keystone uri="`+e.PublicURL+`"`)
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		var ra interface{ RetryAfter() time.Duration }
		if errors.As(err, &ra) {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(ra.RetryAfter().Seconds()))))
		}
		if w.Header().Get("Retry-After") == "" {
			w.Header().Set("Retry-After", "5")
		}
	}
	WriteJSON(w, status, body(status, code, msg))
}

// JSONContentType is the Content-Type of every JSON answer (kps-v3-api.md §1.4), shared rather
// than rebuilt per response.
var JSONContentType = []string{"application/json;charset=UTF-8"}

// WriteJSON renders v with the content type of §1.4.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		slog.Error("encoding a response failed", "err", err)
		b, status = []byte(`{"error_code":"KPS.6501","error_msg":"Internal error."}`), http.StatusInternalServerError
	}
	WriteBytes(w, status, b)
}

// WriteBytes answers status with a JSON body already encoded.
func WriteBytes(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h["Content-Type"] = JSONContentType
	h["Content-Length"] = []string{strconv.Itoa(len(b))}
	w.WriteHeader(status)
	w.Write(b)
}

// WriteEmpty answers with no body (§1.4 "empty body").
func WriteEmpty(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(status)
}
