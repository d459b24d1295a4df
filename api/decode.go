package api

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/strictjson"
)

// MaxBody is the request body limit of kps-v3-api.md §1.4.
const MaxBody = 1 << 20

// MaxIdentityBody is the body limit of the identity routes (auth.md §5.1).
const MaxIdentityBody = 64 << 10

// ReadBody checks the content type and size of a request body and parses it as JSON, keeping
// numbers exact. The result is a map, a slice, or another JSON value.
func ReadBody(r *http.Request, limit int64) (any, error) {
	raw, err := ReadRaw(r, limit)
	if err != nil {
		return nil, err
	}
	return ParseJSON(raw)
}

// ReadRaw checks the content type and size of a body and returns its bytes.
func ReadRaw(r *http.Request, limit int64) ([]byte, error) {
	if err := checkJSONContentType(r); err != nil {
		return nil, err
	}
	return ReadLimited(r, limit)
}

// ReadLimited reads a request body of at most limit bytes; a larger one is 413 KPS.6020.
func ReadLimited(r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, kps.Errorf(kps.ErrTooLarge, "The request body is too large.")
	case err != nil:
		return nil, kps.Errorf(kps.ErrBadJSON, "The request body could not be read.")
	}
	return b, nil
}

// checkJSONContentType accepts any application/json media type, parameters allowed (§1.4).
func checkJSONContentType(r *http.Request) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !strings.EqualFold(mt, "application/json") {
		return kps.Errorf(kps.ErrContentType, "The request body must be JSON (Content-Type: application/json).")
	}
	return nil
}

// ParseJSON parses one JSON value, numbers kept exact (json.Number); trailing data, invalid
// JSON and a member given twice in one object are KPS.6001 (strictjson.Parse).
func ParseJSON(raw []byte) (any, error) { return strictjson.Parse(raw) }

// Object is a JSON object being validated (strictjson.Object): Path names it in error
// messages ("server.auth"); unknown members are ignored and null equals absent (§1.4).
type Object = strictjson.Object

// ReadObject reads a request body that must be a JSON object (§1.4), of at most limit bytes.
func ReadObject(r *http.Request, limit int64) (Object, error) {
	v, err := ReadBody(r, limit)
	if err != nil {
		return Object{}, err
	}
	return RootObject(v)
}

// RootObject returns the body as an object, or KPS.6001 for any other shape.
func RootObject(v any) (Object, error) { return strictjson.RootObject(v) }
