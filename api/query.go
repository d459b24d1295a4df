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

// repeatedParameter returns the first of names given more than once in q, or "".
func repeatedParameter(q url.Values, names []string) string {
	for _, n := range names {
		if len(q[n]) > 1 {
			return n
		}
	}
	return ""
}

// queryOnce returns the query of a KPS or Nova request, refusing a repeated parameter among
// names with its own code where it has one (limit KPS.6005, offset KPS.6006, marker
// KPS.6007) and KPS.6003 otherwise. renderError gives it the body of the route's family.
func queryOnce(r *http.Request, names ...string) (url.Values, error) {
	q := r.URL.Query()
	n := repeatedParameter(q, names)
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

// identityQueryOnce is queryOnce for the identity routes: a repeated parameter is the
// KPS.6003 "Invalid parameter" of auth.md §11.3.
func identityQueryOnce(r *http.Request, names ...string) (url.Values, error) {
	q := r.URL.Query()
	if n := repeatedParameter(q, names); n != "" {
		return nil, kps.InvalidParameter(n)
	}
	return q, nil
}
