package e2e

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// heldConn is one connection to the service from a chosen loopback address, after one request.
type heldConn struct {
	conn   net.Conn
	status int
	header http.Header
	body   map[string]any
	closed bool // the service closed the connection after its answer
}

// connectFrom opens a connection to addr from the loopback address local (all of 127.0.0.0/8
// reaches the service on Linux, each as a client of its own), sends GET /healthz and reads the
// answer. A 200 connection stays open (keep-alive) until the caller closes it.
func connectFrom(t *testing.T, addr, local string) *heldConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Errorf("dial from %s: %v", local, err)
		return nil
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: kps\r\n\r\n"); err != nil {
		c.Close()
		t.Errorf("request from %s: %v", local, err)
		return nil
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		t.Errorf("answer to %s: %v", local, err)
		return nil
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	h := &heldConn{conn: c, status: resp.StatusCode, header: resp.Header}
	if err := json.Unmarshal(raw, &h.body); err != nil {
		t.Errorf("answer to %s: %d %q", local, resp.StatusCode, raw)
	}
	if resp.StatusCode != http.StatusOK {
		// Nothing more comes: the service closes a refused connection.
		_, err := br.ReadByte()
		h.closed = err == io.EOF
		c.Close()
	}
	return h
}

// connectAll opens n connections from local at once and returns them.
func connectAll(t *testing.T, addr, local string, n int) []*heldConn {
	t.Helper()
	out := make([]*heldConn, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			out[i] = connectFrom(t, addr, local)
		}()
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return out
}

var requestIDFormat = regexp.MustCompile(`^[0-9a-f]{32}$`)

// split counts the admitted connections and checks every refused one: 503 KPS.6502 with
// Retry-After, an X-Request-Id, the message of the cap it hit, and closed by the service.
func split(t *testing.T, conns []*heldConn, wantMsg ...string) (ok []*heldConn, refused int) {
	t.Helper()
	for _, h := range conns {
		if h.status == http.StatusOK {
			ok = append(ok, h)
			continue
		}
		refused++
		msg, _ := h.body["error_msg"].(string)
		if h.status != http.StatusServiceUnavailable || h.body["error_code"] != "KPS.6502" || h.header.Get("Retry-After") != "5" ||
			!requestIDFormat.MatchString(h.header.Get("X-Request-Id")) || !h.closed {
			t.Errorf("refused connection: %d %v %v closed=%v", h.status, h.header, h.body, h.closed)
		}
		matched := false
		for _, w := range wantMsg {
			matched = matched || strings.Contains(msg, w)
		}
		if !matched {
			t.Errorf("refusal %q, want one of %q", msg, wantMsg)
		}
	}
	return ok, refused
}

const (
	perClientMsg = "from this client"
	totalMsg     = "The service has too many connections open"
)

// TestConnectionCaps (docs/SECURITY.md 5.3) runs the built binary with small caps and opens
// real connections in parallel from several loopback addresses: exactly the cap's number are
// served, the rest get 503 KPS.6502 and are closed; a closed connection gives its place back;
// a trusted proxy is held to the total cap only.
func TestConnectionCaps(t *testing.T) {
	t.Parallel()
	bin := kpsBinary(t)
	base, _ := startBinary(t, bin, []string{"KPS_DATA_DIR=" + t.TempDir(), "KPS_ADMIN_PASSWORD=conn-caps-password"},
		"--max-connections", "6", "--max-connections-per-ip", "3")
	addr := strings.TrimPrefix(base, "http://")

	// One client: 20 at once, 3 served.
	a, refused := split(t, connectAll(t, addr, "127.0.0.2", 20), perClientMsg)
	if len(a) != 3 || refused != 17 {
		t.Fatalf("one client, 20 connections at once: %d served, %d refused; want 3 and 17", len(a), refused)
	}
	// A second client fills the total: 3 served, whichever cap the others hit first.
	b, refused := split(t, connectAll(t, addr, "127.0.0.3", 20), perClientMsg, totalMsg)
	if len(b) != 3 || refused != 17 {
		t.Fatalf("second client: %d served, %d refused; want 3 and 17", len(b), refused)
	}
	// A third client finds the service full.
	if c, refused := split(t, connectAll(t, addr, "127.0.0.4", 5), totalMsg); len(c) != 0 || refused != 5 {
		t.Fatalf("third client with the service full: %d served", len(c))
	}
	// The held connections still work.
	for _, h := range append(a, b...) {
		if _, err := io.WriteString(h.conn, "GET /healthz HTTP/1.1\r\nHost: kps\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if resp, err := http.ReadResponse(bufio.NewReader(h.conn), nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("a held connection: %v %v", resp, err)
		}
	}
	// Closing the first client's connections gives their places back: the third client gets
	// exactly three (polled: the service notices a close when it reads the end of the stream).
	for _, h := range a {
		h.conn.Close()
	}
	var c []*heldConn
	deadline := time.Now().Add(15 * time.Second)
	for len(c) < 3 && time.Now().Before(deadline) {
		if h := connectFrom(t, addr, "127.0.0.4"); h != nil && h.status == http.StatusOK {
			c = append(c, h)
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if len(c) != 3 {
		t.Fatalf("after three closes, %d places came back", len(c))
	}
	if more, _ := split(t, connectAll(t, addr, "127.0.0.5", 4), totalMsg); len(more) != 0 {
		t.Fatal("more places came back than were given up")
	}
	for _, h := range append(b, c...) {
		h.conn.Close()
	}

	// Behind a trusted proxy the TCP peer is the proxy: it is held to the total cap only.
	base, _ = startBinary(t, bin, []string{"KPS_DATA_DIR=" + t.TempDir(), "KPS_ADMIN_PASSWORD=conn-caps-password"},
		"--max-connections", "4", "--max-connections-per-ip", "1", "--trusted-proxies", "127.0.0.9")
	addr = strings.TrimPrefix(base, "http://")
	direct, refused := split(t, connectAll(t, addr, "127.0.0.6", 5), perClientMsg)
	if len(direct) != 1 || refused != 4 {
		t.Fatalf("direct client with a cap of 1: %d served", len(direct))
	}
	proxy, refused := split(t, connectAll(t, addr, "127.0.0.9", 10), totalMsg)
	if len(proxy) != 3 || refused != 7 {
		t.Fatalf("trusted proxy: %d served, %d refused; want 3 (the total less the direct client's) and 7", len(proxy), refused)
	}
	for _, h := range append(direct, proxy...) {
		h.conn.Close()
	}
}
