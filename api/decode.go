package api

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"mime"
	"net/http"
	"strings"

	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/strictjson"
)

// maxBody is the request body limit of §1.4.
const maxBody = 1 << 20

// readBody checks the content type and size of a request body and parses it as JSON, keeping
// numbers exact. The result is a map, a slice, or another JSON value.
func readBody(r *http.Request, limit int64) (any, error) {
	raw, err := readRaw(r, limit)
	if err != nil {
		return nil, err
	}
	return parseJSON(raw)
}

// checkJSONContentType accepts any application/json media type, parameters allowed (§1.4).
func checkJSONContentType(r *http.Request) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !strings.EqualFold(mt, "application/json") {
		return kps.Errorf(kps.ErrContentType, "The request body must be JSON (Content-Type: application/json).")
	}
	return nil
}

func parseJSON(raw []byte) (any, error) {
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
		return nil, kps.Errorf(kps.ErrBadJSON, "The request body is not valid JSON: member '%s' appears twice in one object.", clip(name))
	}
	return v, nil
}

// object is a JSON object being validated; path names it in error messages ("server.auth").
// Unknown members are ignored and null equals absent (§1.4).
type object struct {
	m    map[string]any
	path string
}

// readObject reads a request body that must be a JSON object (§1.4).
func readObject(r *http.Request) (object, error) {
	v, err := readBody(r, maxBody)
	if err != nil {
		return object{}, err
	}
	return rootObject(v)
}

// rootObject returns the body as an object, or KPS.6001 for any other shape.
func rootObject(v any) (object, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return object{}, kps.Errorf(kps.ErrBadJSON, "The request body must be a JSON object.")
	}
	return object{m: m}, nil
}

func (o object) name(member string) string {
	if o.path == "" {
		return member
	}
	return o.path + "." + member
}

// present reports whether member is present and not null.
func (o object) present(member string) bool { return o.m[member] != nil }

// explicitNull reports whether member is present with the value null.
func (o object) explicitNull(member string) bool {
	v, ok := o.m[member]
	return ok && v == nil
}

// wrongType is the generic type error, or the member's specific code when one is given.
func (o object) wrongType(member, want string, code ...string) error {
	c := kps.ErrInvalid
	if len(code) > 0 {
		c = code[0]
	}
	return kps.Errorf(c, "Invalid parameter %s: %s is required.", o.name(member), want)
}

func (o object) missing(member string, code ...string) error {
	c := kps.ErrMissing
	if len(code) > 0 {
		c = code[0]
	}
	return kps.Errorf(c, "Missing required parameter: %s.", o.name(member))
}

// object returns a nested object; required makes absence an error (with code, if given).
func (o object) object(member string, required bool, code ...string) (object, bool, error) {
	v := o.m[member]
	if v == nil {
		if required {
			return object{}, false, o.missing(member, code...)
		}
		return object{}, false, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return object{}, false, o.wrongType(member, "an object", code...)
	}
	return object{m: m, path: o.name(member)}, true, nil
}

// str returns a string member; required makes absence, null and "" an error.
func (o object) str(member string, required bool, code ...string) (string, bool, error) {
	v := o.m[member]
	if v == nil {
		if required {
			return "", false, o.missing(member, code...)
		}
		return "", false, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", false, o.wrongType(member, "a string", code...)
	}
	if required && s == "" {
		return "", false, o.missing(member, code...)
	}
	return s, true, nil
}

func (o object) boolean(member string, code ...string) (bool, bool, error) {
	v := o.m[member]
	if v == nil {
		return false, false, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, false, o.wrongType(member, "a boolean", code...)
	}
	return b, true, nil
}

// integer returns an integer member; fractions, exponents beyond int64 and strings are refused.
func (o object) integer(member string, code ...string) (int64, bool, error) {
	v := o.m[member]
	if v == nil {
		return 0, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, false, o.wrongType(member, "an integer", code...)
	}
	i, err := n.Int64()
	if err != nil {
		f, ferr := n.Float64()
		// float64(math.MaxInt64) is 2^63, itself out of range: converting it is undefined.
		if ferr != nil || f != math.Trunc(f) || f >= math.MaxInt64 || f < math.MinInt64 {
			return 0, false, o.wrongType(member, "an integer", code...)
		}
		i = int64(f)
	}
	return i, true, nil
}

func (o object) array(member string, required bool, code ...string) ([]any, bool, error) {
	v := o.m[member]
	if v == nil {
		if required {
			return nil, false, o.missing(member, code...)
		}
		return nil, false, nil
	}
	a, ok := v.([]any)
	if !ok {
		return nil, false, o.wrongType(member, "an array", code...)
	}
	return a, true, nil
}

// stringArray returns an array of strings.
func (o object) stringArray(member string, code ...string) ([]string, bool, error) {
	a, ok, err := o.array(member, false, code...)
	if err != nil || !ok {
		return nil, ok, err
	}
	out := make([]string, 0, len(a))
	for _, v := range a {
		s, isStr := v.(string)
		if !isStr {
			return nil, false, o.wrongType(member, "an array of strings", code...)
		}
		out = append(out, s)
	}
	return out, true, nil
}
