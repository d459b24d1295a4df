package console

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"
)

// apiTransport is the http.RoundTripper of the console's API client: it hands each request to
// the API's handler in this process, as the request of the browser the console is answering
// would have reached it. The request carries the browser's TCP peer (RemoteAddr), its TLS state
// and its X-Forwarded-For, so the API decides the client's address exactly as for a direct
// call: the peer, or — only when the peer is one of --trusted-proxies — the address the proxies
// name. Lockouts and rate limits (auth.md §12.4) therefore count a console sign-in against the
// browser's address, never against one shared loopback address, and a browser cannot choose
// its address by sending X-Forwarded-For itself (docs/decisions.md, "The console calls the API
// in process").
type apiTransport struct {
	api  http.Handler
	from *http.Request
	// started is when the console began to answer; spent is the time the API took. Both are
	// for the page's Server-Timing header.
	started time.Time
	spent   atomic.Int64
}

// RoundTrip serves req with the API handler and returns its answer; it never fails on its own.
func (t *apiTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	in := req.Clone(req.Context())
	in.RemoteAddr = t.from.RemoteAddr
	in.TLS = t.from.TLS
	in.Host = t.from.Host
	in.URL = &url.URL{Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery}
	in.RequestURI = in.URL.RequestURI()
	in.Proto, in.ProtoMajor, in.ProtoMinor = "HTTP/1.1", 1, 1
	in.Header.Del("X-Forwarded-For")
	if xff := t.from.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		in.Header["X-Forwarded-For"] = append([]string(nil), xff...)
	}
	in.Header.Set("User-Agent", "OpenKPS-console")
	if in.Body == nil {
		in.Body = http.NoBody
	}
	rec := &answer{header: http.Header{}}
	t.api.ServeHTTP(rec, in)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	t.spent.Add(int64(time.Since(start)))
	header := rec.header
	if rec.written != nil {
		header = rec.written
	}
	return &http.Response{
		Status:        strconv.Itoa(rec.status) + " " + http.StatusText(rec.status),
		StatusCode:    rec.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        header,
		Body:          io.NopCloser(&rec.body),
		ContentLength: int64(rec.body.Len()),
		Request:       req,
	}, nil
}

// answer is the http.ResponseWriter the API writes one in-process answer to.
type answer struct {
	header  http.Header
	written http.Header // the header as it was when the status was written
	status  int
	body    bytes.Buffer
}

func (a *answer) Header() http.Header { return a.header }

func (a *answer) WriteHeader(status int) {
	if a.status != 0 {
		return
	}
	a.status = status
	a.written = a.header.Clone()
}

func (a *answer) Write(b []byte) (int, error) {
	if a.status == 0 {
		a.WriteHeader(http.StatusOK)
	}
	return a.body.Write(b)
}
