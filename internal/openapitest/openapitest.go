// Package openapitest checks the answers of a running OpenKPS against its API description,
// docs/openapi.json, so that the document cannot drift from the service unnoticed: the
// end-to-end suites send their requests through one Transport, which validates every answer —
// its status (documented for the operation), its content type (exactly one the operation
// documents) and its body and headers (the documented schemas, with kin-openapi) — and turns an
// answer that does not match into an error of the request that received it.
//
// The document itself is loaded and validated as OpenAPI 3 once per process. Where the
// document and a real answer disagree, the answer is the contract (KPS v3 must stay
// byte-compatible with Huawei's API; docs/spec decides when in doubt): fix the document.
package openapitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/openkps/kps/docs"
)

// Validator checks answers against one OpenAPI document.
type Validator struct {
	doc    *openapi3.T
	router routers.Router
	// errorSchemas are the error bodies an answer to a request that matches no documented
	// operation may have (a 404 or 405 of the router).
	errorSchemas []*openapi3.SchemaRef

	mu         sync.Mutex
	mismatches []error
}

// NewValidator loads an OpenAPI 3 document and validates it (kin-openapi's Validate, which
// checks the document against the OpenAPI 3 rules, its references and its examples).
func NewValidator(document []byte) (*Validator, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(document)
	if err != nil {
		return nil, fmt.Errorf("openapitest: load: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("openapitest: the document is not valid OpenAPI 3: %w", err)
	}
	// The servers' URLs are the deployment's; operations are matched on the path alone.
	routed := *doc
	routed.Servers = nil
	router, err := gorillamux.NewRouter(&routed)
	if err != nil {
		return nil, fmt.Errorf("openapitest: router: %w", err)
	}
	v := &Validator{doc: doc, router: router}
	for _, name := range []string{"Error", "IdentityError", "NovaFault"} {
		if s := doc.Components.Schemas[name]; s != nil {
			v.errorSchemas = append(v.errorSchemas, s)
		}
	}
	return v, nil
}

var (
	sharedOnce sync.Once
	shared     *Validator
	sharedErr  error
)

// Docs returns the validator of docs/openapi.json, loaded once per process.
func Docs() (*Validator, error) {
	sharedOnce.Do(func() { shared, sharedErr = NewValidator(docs.OpenAPI) })
	return shared, sharedErr
}

// MismatchError is an answer that does not match the document.
type MismatchError struct {
	Method, Path string
	Status       int
	ContentType  string
	Reason       string
	Body         []byte
}

func (e *MismatchError) Error() string {
	body := e.Body
	if len(body) > 400 {
		body = append(body[:400:400], "…"...)
	}
	return fmt.Sprintf("openapitest: %s %s: answer %d %q does not match docs/openapi.json: %s; body: %s",
		e.Method, e.Path, e.Status, e.ContentType, e.Reason, body)
}

// Check validates one answer to req: status, header, body.
func (v *Validator) Check(req *http.Request, status int, header http.Header, body []byte) error {
	mismatch := func(format string, args ...any) error {
		return &MismatchError{Method: req.Method, Path: req.URL.RequestURI(), Status: status,
			ContentType: header.Get("Content-Type"), Reason: fmt.Sprintf(format, args...), Body: body}
	}
	route, params, err := v.findRoute(req)
	if err != nil {
		// No documented operation: only the router's refusals may answer it.
		if !errors.Is(err, routers.ErrPathNotFound) && !errors.Is(err, routers.ErrMethodNotAllowed) {
			return mismatch("finding the operation: %v", err)
		}
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
			return mismatch("no operation is documented for it, yet the answer is not 404 or 405")
		}
		if req.Method == http.MethodHead {
			return nil
		}
		if ct, _, _ := mime.ParseMediaType(header.Get("Content-Type")); ct != "application/json" {
			return mismatch("an error is JSON")
		}
		var value any
		if err := json.Unmarshal(body, &value); err != nil {
			return mismatch("an error is JSON: %v", err)
		}
		var errs []string
		for _, s := range v.errorSchemas {
			err := s.Value.VisitJSON(value, openapi3.VisitAsResponse())
			if err == nil {
				return nil
			}
			errs = append(errs, err.Error())
		}
		return mismatch("the body is none of the documented error bodies: %s", strings.Join(errs, "; "))
	}

	op := route.Operation
	resp := op.Responses.Status(status)
	if resp == nil {
		resp = op.Responses.Default()
	}
	if resp == nil || resp.Value == nil {
		return mismatch("status %d is not documented for %s (documented: %s)", status, op.OperationID, statuses(op))
	}
	if err := v.checkContentType(req, status, header, body, resp.Value); err != "" {
		return mismatch("%s (%s)", err, op.OperationID)
	}
	if req.Method == http.MethodHead {
		return nil // kin-openapi validates no HEAD answer; status and type are checked above
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 status,
		Header:                 header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		return mismatch("%s: %v", op.OperationID, err)
	}
	return nil
}

// findRoute finds the operation of req; a path with a trailing slash is its operation's when
// the operation says it is served there too (x-trailing-slash, docs/openapi.json's conventions).
func (v *Validator) findRoute(req *http.Request) (*routers.Route, map[string]string, error) {
	route, params, err := v.router.FindRoute(req)
	if err == nil || req.URL.Path == "/" || !strings.HasSuffix(req.URL.Path, "/") {
		return route, params, err
	}
	trimmed := req.Clone(req.Context())
	trimmed.URL.Path = strings.TrimSuffix(req.URL.Path, "/")
	trimmed.URL.RawPath = strings.TrimSuffix(req.URL.RawPath, "/")
	r2, p2, err2 := v.router.FindRoute(trimmed)
	if err2 != nil || r2.Operation.Extensions["x-trailing-slash"] != true {
		return route, params, err
	}
	return r2, p2, nil
}

// checkContentType applies what kin-openapi leaves open: the answer's content type is exactly
// one of the documented keys (kin-openapi also takes a key's base type or a wildcard), a
// documented body is there and an undocumented one is not.
func (v *Validator) checkContentType(req *http.Request, status int, header http.Header, body []byte, resp *openapi3.Response) string {
	ct := header.Get("Content-Type")
	if len(resp.Content) == 0 {
		if len(body) > 0 {
			return fmt.Sprintf("a body (%d bytes) where the document has none", len(body))
		}
		return ""
	}
	if len(body) == 0 && req.Method != http.MethodHead {
		return "no body where the document has one"
	}
	for key := range resp.Content {
		if sameMediaType(key, ct) {
			return ""
		}
	}
	keys := make([]string, 0, len(resp.Content))
	for key := range resp.Content {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	return fmt.Sprintf("content type %q is not documented (documented: %s)", ct, strings.Join(keys, ", "))
}

// sameMediaType compares media types with their parameters, ignoring letter case and spaces.
func sameMediaType(a, b string) bool {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, " ", "")) }
	return norm(a) == norm(b)
}

func statuses(op *openapi3.Operation) string {
	var out []string
	for code := range op.Responses.Map() {
		out = append(out, code)
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

func (v *Validator) record(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.mismatches = append(v.mismatches, err)
}

// Mismatches returns every mismatch the validator's transports have seen, including those of
// requests whose error a test did not look at.
func (v *Validator) Mismatches() []error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]error(nil), v.mismatches...)
}

// Transport is an http.RoundTripper that checks every answer with its validator: an answer
// that does not match the document is closed and the request fails with a *MismatchError. It
// reads each answer whole before returning it.
type Transport struct {
	// Base sends the requests; nil means http.DefaultTransport.
	Base      http.RoundTripper
	validator *Validator
}

// NewTransport returns a Transport over base (nil: http.DefaultTransport) that checks answers
// against docs/openapi.json. It panics if the document does not load: every test that uses it
// would fail anyway, and the document's own tests say why.
func NewTransport(base http.RoundTripper) *Transport {
	v, err := Docs()
	if err != nil {
		panic(err)
	}
	return v.Transport(base)
}

// Transport returns a Transport over base that checks answers with v.
func (v *Validator) Transport(base http.RoundTripper) *Transport {
	return &Transport{Base: base, validator: v}
}

// Client returns an HTTP client whose every answer is checked against docs/openapi.json.
func Client() *http.Client { return &http.Client{Transport: NewTransport(nil)} }

// RoundTrip sends req and checks the answer.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if err := t.validator.Check(req, resp.StatusCode, resp.Header, body); err != nil {
		t.validator.record(err)
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// CloseIdleConnections closes the idle connections of the base transport.
func (t *Transport) CloseIdleConnections() {
	if c, ok := t.Base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// ReverseProxy forwards every request to target through a Transport over base (nil:
// http.DefaultTransport), for clients that take no Go transport (the openstack command): their
// answers are checked too. An answer that does not match is answered 502 and given to report.
func ReverseProxy(target *url.URL, base http.RoundTripper, report func(error)) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host // links and signatures use the host the client called
		},
		Transport: NewTransport(base),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			report(err)
			w.WriteHeader(http.StatusBadGateway)
		},
	}
}

// Main runs the tests of m, then fails the run if a Transport of docs/openapi.json saw an answer
// that does not match, even one whose error the test that received it did not look at (a
// test that retries on errors, say). Use it as TestMain: os.Exit(openapitest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	v, err := Docs()
	if err != nil {
		return code
	}
	if seen := v.Mismatches(); len(seen) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: %d answers did not match docs/openapi.json:\n", len(seen))
		for _, err := range seen {
			fmt.Fprintln(os.Stderr, "\t"+err.Error())
		}
		if code == 0 {
			code = 1
		}
	}
	return code
}
