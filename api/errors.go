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

// errorBody is the KPS error body; both members are always non-empty (§1.5).
type errorBody struct {
	ErrorCode string `json:"error_code"`
	ErrorMsg  string `json:"error_msg"`
}

// identityErrorBody carries both the Keystone and the KPS conventions (auth.md §11.1).
type identityErrorBody struct {
	Error struct {
		Code    int    `json:"code"`
		Title   string `json:"title"`
		Message string `json:"message"`
	} `json:"error"`
	ErrorCode string `json:"error_code"`
	ErrorMsg  string `json:"error_msg"`
}

// renderError is the one error renderer. Internal errors are logged with their detail and shown
// with a generic message; a Nova fault (which carries a status and no KPS code) is logged by
// its status, never as an internal error when it is a 4xx.
func (s *Server) renderError(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := kps.ErrorCode(err), kps.ErrorMessage(err)
	status := HTTPStatus(code)
	var nf *novaFault
	isNova := isNovaPath(r.URL.Path) && errors.As(err, &nf)
	if isNova {
		status = nf.status
	}
	s.logError(w, r, status, code == kps.ErrInternal && !isNova, isNova, err)
	switch status {
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Keystone uri="`+s.cfg.PublicURL+`"`)
	case http.StatusServiceUnavailable, http.StatusTooManyRequests:
		// A lockout knows when it ends (auth.md §12.4); anything else suggests 5 seconds.
		var ra interface{ RetryAfter() time.Duration }
		if errors.As(err, &ra) {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(ra.RetryAfter().Seconds()))))
		}
		if w.Header().Get("Retry-After") == "" {
			w.Header().Set("Retry-After", "5")
		}
	}
	if isNovaPath(r.URL.Path) {
		if isNova {
			code, msg = nf.code, nf.msg
		}
		writeJSON(w, status, novaErrorBody(status, code, msg))
		return
	}
	if isIdentityPath(r.URL.Path) {
		var b identityErrorBody
		b.Error.Code, b.Error.Title, b.Error.Message = status, http.StatusText(status), msg
		b.ErrorCode, b.ErrorMsg = code, msg
		writeJSON(w, status, b)
		return
	}
	writeJSON(w, status, errorBody{ErrorCode: code, ErrorMsg: msg})
}

// logError logs what renderError answers with status: an internal error (or a Nova fault of
// 5xx) with its detail; a Nova fault of 401, 403 or 429 as a refusal at INFO (the KPS-coded
// refusals are logged where they are decided, logRefusal); other Nova faults at DEBUG.
func (s *Server) logError(w http.ResponseWriter, r *http.Request, status int, internal, nova bool, err error) {
	attrs := []any{"request_id", w.Header().Get("X-Request-Id"), "method", r.Method, "path", r.URL.Path, "status", status}
	switch {
	case internal, nova && status >= 500:
		s.log.Error("internal error", append(attrs, "err", err)...)
	case !nova:
	case status == http.StatusUnauthorized, status == http.StatusForbidden, status == http.StatusTooManyRequests:
		s.log.Info("request refused", append(attrs, "reason", err.Error(), "client_ip", s.clientIP(r))...)
	default:
		s.log.Debug("request rejected", append(attrs, "reason", err.Error())...)
	}
}

// writeJSON renders v with the content type of §1.4.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		slog.Error("encoding a response failed", "err", err)
		b, status = []byte(`{"error_code":"KPS.6501","error_msg":"Internal error."}`), http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

// writeEmpty answers with no body (§1.4 "empty body").
func writeEmpty(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(status)
}

func itoa(i int) string { return strconv.Itoa(i) }
