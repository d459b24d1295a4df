package strictjson

import (
	"bytes"
	"encoding/json"
	"io"
	"math"

	"github.com/openkps/kps"
)

// The one reader of JSON request bodies: Parse refuses what encoding/json lets through
// (trailing data, duplicate members), and an Object reads members one at a time, each refusal
// a KPS error naming the member by its path. The HTTP API (api.Object) and iam's token request
// read their bodies with it.

// Parse parses one JSON value, numbers kept exact (json.Number); trailing data, invalid
// JSON and a member given twice in one object are KPS.6001.
func Parse(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, kps.Errorf(kps.ErrBadJSON, "The request body is not valid JSON.")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, kps.Errorf(kps.ErrBadJSON, "The request body is not valid JSON.")
	}
	if name, dup := DuplicateKey(raw); dup {
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
