package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
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
// JSON and a member given twice in one object are KPS.6001.
func ParseJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, kps.Errorf(kps.ErrBadJSON, "The request body is not valid JSON.")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, kps.Errorf(kps.ErrBadJSON, "The request body is not valid JSON.")
	}
	if name, dup := strictjson.DuplicateKey(raw); dup {
		return nil, kps.Errorf(kps.ErrBadJSON, "The request body is not valid JSON: member '%s' appears twice in one object.", kps.Clip(name))
	}
	return v, nil
}

// Object is a JSON object being validated; Path names it in error messages ("server.auth").
// Unknown members are ignored and null equals absent (§1.4).
type Object struct {
	M    map[string]any
	Path string
}

// ReadObject reads a request body that must be a JSON object (§1.4), of at most limit bytes.
func ReadObject(r *http.Request, limit int64) (Object, error) {
	v, err := ReadBody(r, limit)
	if err != nil {
		return Object{}, err
	}
	return RootObject(v)
}

// RootObject returns the body as an object, or KPS.6001 for any other shape.
func RootObject(v any) (Object, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return Object{}, kps.Errorf(kps.ErrBadJSON, "The request body must be a JSON object.")
	}
	return Object{M: m}, nil
}

// Name is the path of member in error messages ("server.auth.key").
func (o Object) Name(member string) string {
	if o.Path == "" {
		return member
	}
	return o.Path + "." + member
}

// Present reports whether member is present and not null.
func (o Object) Present(member string) bool { return o.M[member] != nil }

// ExplicitNull reports whether member is present with the value null.
func (o Object) ExplicitNull(member string) bool {
	v, ok := o.M[member]
	return ok && v == nil
}

// WrongType is the generic type error, or the member's specific code when one is given.
func (o Object) WrongType(member, want string, code ...string) error {
	c := kps.ErrInvalid
	if len(code) > 0 {
		c = code[0]
	}
	return kps.Errorf(c, "Invalid parameter %s: %s is required.", o.Name(member), want)
}

// Missing is the KPS.6002 of an absent required member, or its specific code when one is
// given.
func (o Object) Missing(member string, code ...string) error {
	c := kps.ErrMissing
	if len(code) > 0 {
		c = code[0]
	}
	return kps.Errorf(c, "Missing required parameter: %s.", o.Name(member))
}

// Object returns a nested object; required makes absence an error (with code, if given).
func (o Object) Object(member string, required bool, code ...string) (Object, bool, error) {
	v := o.M[member]
	if v == nil {
		if required {
			return Object{}, false, o.Missing(member, code...)
		}
		return Object{}, false, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return Object{}, false, o.WrongType(member, "an object", code...)
	}
	return Object{M: m, Path: o.Name(member)}, true, nil
}

// Str returns a string member; required makes absence, null and "" an error.
func (o Object) Str(member string, required bool, code ...string) (string, bool, error) {
	v := o.M[member]
	if v == nil {
		if required {
			return "", false, o.Missing(member, code...)
		}
		return "", false, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", false, o.WrongType(member, "a string", code...)
	}
	if required && s == "" {
		return "", false, o.Missing(member, code...)
	}
	return s, true, nil
}

// Boolean returns a boolean member.
func (o Object) Boolean(member string, code ...string) (bool, bool, error) {
	v := o.M[member]
	if v == nil {
		return false, false, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, false, o.WrongType(member, "a boolean", code...)
	}
	return b, true, nil
}

// Integer returns an integer member; fractions, exponents beyond int64 and strings are refused.
func (o Object) Integer(member string, code ...string) (int64, bool, error) {
	v := o.M[member]
	if v == nil {
		return 0, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, false, o.WrongType(member, "an integer", code...)
	}
	i, err := n.Int64()
	if err != nil {
		f, ferr := n.Float64()
		// float64(math.MaxInt64) is 2^63, itself out of range: converting it is undefined.
		if ferr != nil || f != math.Trunc(f) || f >= math.MaxInt64 || f < math.MinInt64 {
			return 0, false, o.WrongType(member, "an integer", code...)
		}
		i = int64(f)
	}
	return i, true, nil
}

// Array returns an array member; required makes absence and null an error.
func (o Object) Array(member string, required bool, code ...string) ([]any, bool, error) {
	v := o.M[member]
	if v == nil {
		if required {
			return nil, false, o.Missing(member, code...)
		}
		return nil, false, nil
	}
	a, ok := v.([]any)
	if !ok {
		return nil, false, o.WrongType(member, "an array", code...)
	}
	return a, true, nil
}

// StringArray returns an array of strings.
func (o Object) StringArray(member string, code ...string) ([]string, bool, error) {
	a, ok, err := o.Array(member, false, code...)
	if err != nil || !ok {
		return nil, ok, err
	}
	out := make([]string, 0, len(a))
	for _, v := range a {
		s, isStr := v.(string)
		if !isStr {
			return nil, false, o.WrongType(member, "an array of strings", code...)
		}
		out = append(out, s)
	}
	return out, true, nil
}
