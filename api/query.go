package api

import (
	"net/http"
	"net/url"

	"github.com/openkps/kps"
)

// A query parameter that a route reads and that is given more than once is refused with 400
// rather than read as its first (or last) value (kps-v3-api.md §1.4, auth.md §8.2,
// nova-keypairs.md §5.1.1): a proxy, a cache or a logging layer in front of the service may
// pick another value than the handler, and a request must mean one thing to all of them.
// Parameters a route does not read are ignored, repeated or not.

// RepeatedParameter returns the first of names given more than once in q, or "".
func RepeatedParameter(q url.Values, names []string) string {
	for _, n := range names {
		if len(q[n]) > 1 {
			return n
		}
	}
	return ""
}

// QueryOnce returns the query of a KPS or Nova request, refusing a repeated parameter among
// names with its own code where it has one (limit KPS.6005, offset KPS.6006, marker
// KPS.6007) and KPS.6003 otherwise. The family renders it with its own body.
func QueryOnce(r *http.Request, names ...string) (url.Values, error) {
	q := r.URL.Query()
	n := RepeatedParameter(q, names)
	if n == "" {
		return q, nil
	}
	code := kps.ErrInvalid
	switch n {
	case "limit":
		code = kps.ErrLimit
	case "offset":
		code = kps.ErrOffset
	case "marker":
		code = kps.ErrMarker
	}
	return nil, kps.Errorf(code, "Invalid %s: the query parameter is given more than once.", n)
}
