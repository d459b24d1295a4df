package iam

import (
	"github.com/openkps/kps"
	"github.com/openkps/kps/internal/strictjson"
)

// Request limits of auth.md §5.1.
const (
	MaxAuthBodyBytes = 64 << 10
	maxPasswordBytes = 1024
)

// DecodeAuthRequest decodes and validates the body of POST /v3/auth/tokens (auth.md §5.1):
// KPS.6001 for a body that is not a JSON object, KPS.6002 for a missing or empty member,
// KPS.6003 for a wrong type or an unsupported scope, KPS.6107 for methods other than exactly
// ["password"] or ["token"] and for a password longer than 1024 bytes (before any hashing),
// KPS.6020 for a body over 64 KiB. Members are named by their JSON path in messages; values
// are never quoted. For the token method, Token is empty when the body names no token: the
// caller then uses the X-Auth-Token header.
func DecodeAuthRequest(body []byte) (IssueRequest, error) {
	var req IssueRequest
	if len(body) > MaxAuthBodyBytes {
		return req, kps.Errorf(kps.ErrTooLarge, "The request body is too large.")
	}
	// strictjson refuses duplicate members too: encoding/json keeps the last of them, and a
	// filter in front that reads the first would judge another login than the one served.
	v, err := strictjson.Parse(body)
	top, _ := v.(map[string]any)
	if err != nil || top == nil {
		return req, kps.Errorf(kps.ErrBadJSON, "The request body is not valid JSON.")
	}
	root := object{path: "", m: top}
	auth, err := root.required("auth")
	if err != nil {
		if kps.ErrorCode(err) == kps.ErrInvalid {
			return req, kps.Errorf(kps.ErrBadJSON, "The request body is not valid JSON.")
		}
		return req, err
	}
	identity, err := auth.required("identity")
	if err != nil {
		return req, err
	}
	if req.Method, err = methods(identity); err != nil {
		return req, err
	}
	switch req.Method {
	case MethodPassword:
		if err := decodePassword(identity, &req); err != nil {
			return req, err
		}
	case MethodToken:
		tok, ok, err := identity.optional("token")
		if err != nil {
			return req, err
		}
		if ok {
			if req.Token, err = tok.str("id"); err != nil {
				return req, err
			}
		}
	}
	sc, ok, err := auth.optional("scope")
	if err != nil || !ok {
		return req, err
	}
	req.Scope, err = decodeScope(sc)
	return req, err
}

func methods(identity object) (string, error) {
	path := identity.path + ".methods"
	ms, ok, err := identity.reader().StringArray("methods")
	if err != nil {
		return "", invalid(path)
	}
	if !ok || len(ms) == 0 {
		return "", missing(path)
	}
	if len(ms) != 1 || (ms[0] != MethodPassword && ms[0] != MethodToken) {
		return "", loginFailed("method-unsupported")
	}
	return ms[0], nil
}

func decodePassword(identity object, req *IssueRequest) error {
	pw, err := identity.required("password")
	if err != nil {
		return err
	}
	user, err := pw.required("user")
	if err != nil {
		return err
	}
	if req.UserID, err = user.str("id"); err != nil {
		return err
	}
	if req.UserName, err = user.str("name"); err != nil {
		return err
	}
	if req.UserID == "" {
		if req.UserName == "" {
			return missing(user.path + ".name")
		}
		d, err := user.required("domain")
		if err != nil {
			return err
		}
		if req.UserDomainID, req.UserDomainName, err = idOrName(d); err != nil {
			return err
		}
	}
	if req.Password, err = user.str("password"); err != nil {
		return err
	}
	if req.Password == "" {
		return missing(user.path + ".password")
	}
	if len(req.Password) > maxPasswordBytes {
		return loginFailed("password-length")
	}
	return nil
}

func decodeScope(sc object) (Scope, error) {
	if len(sc.m) != 1 {
		return Scope{}, invalid(sc.path)
	}
	if p, ok, err := sc.optional("project"); ok || err != nil {
		if err != nil {
			return Scope{}, err
		}
		s := Scope{Kind: ScopeProject}
		if s.ProjectID, err = p.str("id"); err != nil {
			return s, err
		}
		if s.ProjectName, err = p.str("name"); err != nil {
			return s, err
		}
		if s.ProjectID == "" && s.ProjectName == "" {
			return s, missing(p.path + ".id")
		}
		if s.ProjectID == "" {
			// Without a domain the name resolves in the user's own domain ([Choice], as Huawei).
			d, ok, err := p.optional("domain")
			if err != nil {
				return s, err
			}
			if ok {
				if s.DomainID, s.DomainName, err = idOrName(d); err != nil {
					return s, err
				}
			}
		}
		return s, nil
	}
	if d, ok, err := sc.optional("domain"); ok || err != nil {
		if err != nil {
			return Scope{}, err
		}
		s := Scope{Kind: ScopeDomain}
		s.DomainID, s.DomainName, err = idOrName(d)
		return s, err
	}
	// "system", "OS-TRUST:trust" and anything else.
	return Scope{}, invalid(sc.path)
}

func idOrName(o object) (id, name string, err error) {
	if id, err = o.str("id"); err != nil {
		return "", "", err
	}
	if name, err = o.str("name"); err != nil {
		return "", "", err
	}
	if id == "" && name == "" {
		return "", "", missing(o.path + ".id")
	}
	return id, name, nil
}

// object is a JSON object being decoded, with its path for messages: strictjson's reader,
// its refusals given the exact texts of auth.md §11.3.
type object struct {
	path string
	m    map[string]any
}

func (o object) reader() strictjson.Object { return strictjson.Object{M: o.m, Path: o.path} }

func (o object) child(key string) string { return o.reader().Name(key) }

// optional returns the member object; a member that is absent or null is not there.
func (o object) optional(key string) (object, bool, error) {
	c, ok, err := o.reader().Object(key, false)
	if err != nil {
		return object{}, false, invalid(o.child(key))
	}
	return object{c.Path, c.M}, ok, nil
}

func (o object) required(key string) (object, error) {
	c, ok, err := o.optional(key)
	if err == nil && !ok {
		err = missing(o.child(key))
	}
	return c, err
}

// str returns a string member; absent and null are "".
func (o object) str(key string) (string, error) {
	s, _, err := o.reader().Str(key, false)
	if err != nil {
		return "", invalid(o.child(key))
	}
	return s, nil
}

func missing(path string) error {
	return kps.Errorf(kps.ErrMissing, "Missing required parameter: %s.", path)
}

func invalid(path string) error {
	return kps.Errorf(kps.ErrInvalid, "Invalid parameter: %s.", path)
}
