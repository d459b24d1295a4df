package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openkps/kps"
)

// ConnectionLimits caps the connections a listener keeps open at once (docs/deployment.md,
// docs/SECURITY.md 5.3): the server's timeouts bound how long one client holds a connection,
// these bound how many it may hold.
type ConnectionLimits struct {
	// Total caps the connections open at once; 0 means no cap.
	Total int
	// PerClient caps the connections open at once from one client address (an IPv6 client
	// counts per /64, as the lockouts do); 0 means no cap.
	PerClient int
	// TrustedProxies are exempt from PerClient: behind a load balancer every connection comes
	// from the balancer, and the client it speaks for is only known from X-Forwarded-For, once
	// a request has been read. Their connections still count toward Total.
	TrustedProxies []netip.Prefix
	// TLS reports that the listener is wrapped in TLS: a refused connection is then closed
	// without an answer, since a client that starts a TLS handshake cannot read a plain one.
	TLS bool
	// Log receives one WARN line per refusal burst (at most one per refusalLogEvery).
	Log *slog.Logger
}

const (
	// refusalLogEvery spaces the log lines of refused connections, so that a flood does not
	// become a flood of log lines.
	refusalLogEvery = 10 * time.Second
	// maxAnswering bounds the refused connections being answered at once; beyond it a refused
	// connection is closed at once, so that refusing costs no more than accepting.
	maxAnswering = 64
	// answerTimeout bounds the time a refused connection is kept to send its answer and let the
	// client read it.
	answerTimeout = time.Second
)

// LimitConnections returns l with the caps of c applied at Accept: a connection over a cap is
// never handed to the HTTP server. On plain HTTP it gets a fixed answer, 503 KPS.6502 with
// Retry-After (written without reading the request), and is closed; under TLS it is closed.
func LimitConnections(l net.Listener, c ConnectionLimits) net.Listener {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return &limitListener{Listener: l, cfg: c, open: map[netip.Prefix]int{}}
}

type limitListener struct {
	net.Listener
	cfg ConnectionLimits

	mu    sync.Mutex
	total int
	open  map[netip.Prefix]int // per client, only the clients that have a connection open

	answering atomic.Int32
	refused   atomic.Int64 // since the last log line
	lastLog   atomic.Int64 // unix nanoseconds
}

// Accept returns the next connection within the caps, refusing those over them meanwhile.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client, perClient := l.client(c.RemoteAddr())
		if over := l.admit(client, perClient); over != "" {
			l.refuse(c, client, over)
			continue
		}
		return &limitedConn{Conn: c, l: l, client: client, perClient: perClient}, nil
	}
}

// client is the key a connection is counted under, and whether the per-client cap applies.
func (l *limitListener) client(a net.Addr) (netip.Prefix, bool) {
	var addr netip.Addr
	if tcp, ok := a.(*net.TCPAddr); ok {
		addr, _ = netip.AddrFromSlice(tcp.IP)
	} else if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		addr = ap.Addr()
	}
	addr = addr.Unmap().WithZone("")
	if !addr.IsValid() {
		return netip.Prefix{}, false
	}
	bits := 32
	if addr.Is6() {
		bits = 64 // one host holds a whole /64
	}
	p, _ := addr.Prefix(bits)
	for _, proxy := range l.cfg.TrustedProxies {
		if proxy.Contains(addr) {
			return p, false
		}
	}
	return p, l.cfg.PerClient > 0
}

// admit counts a new connection, or returns which cap it is over ("total" or "client").
func (l *limitListener) admit(client netip.Prefix, perClient bool) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.Total > 0 && l.total >= l.cfg.Total {
		return "total"
	}
	if perClient && l.open[client] >= l.cfg.PerClient {
		return "client"
	}
	l.total++
	if perClient {
		l.open[client]++
	}
	return ""
}

func (l *limitListener) release(client netip.Prefix, perClient bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if perClient {
		if l.open[client]--; l.open[client] <= 0 {
			delete(l.open, client)
		}
	}
}

// refusal is the answer of a refused connection: an HTTP/1.1 503 with the KPS error body
// (kps-v3-api.md §1.5) and Retry-After, rendered once but for its X-Request-Id.
type refusal struct{ head, body string }

var (
	refusedTotal  = newRefusal("The service has too many connections open; retry later.")
	refusedClient = newRefusal("Too many connections are open from this client; retry later.")
)

func newRefusal(msg string) refusal {
	body, _ := json.Marshal(CodeBody{ErrorCode: kps.ErrUnavailable, ErrorMsg: msg})
	return refusal{head: "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json;charset=UTF-8\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\nRetry-After: 5\r\nConnection: close\r\n", body: string(body)}
}

func (a refusal) bytes() []byte {
	return []byte(a.head + "X-Request-Id: " + newRequestID() + "\r\n\r\n" + a.body)
}

// refuse answers and closes a connection over a cap, and logs the refusals now and then.
func (l *limitListener) refuse(c net.Conn, client netip.Prefix, over string) {
	l.logRefusal(client, over)
	if l.cfg.TLS || l.answering.Add(1) > maxAnswering {
		if !l.cfg.TLS {
			l.answering.Add(-1)
		}
		c.Close()
		return
	}
	answer := refusedTotal
	if over == "client" {
		answer = refusedClient
	}
	go func() {
		defer l.answering.Add(-1)
		defer c.Close()
		c.SetDeadline(time.Now().Add(answerTimeout))
		if _, err := c.Write(answer.bytes()); err != nil {
			return
		}
		// Half-close and read what the client sent until it closes: closing with its request
		// unread would reset the connection, and the client might lose the answer.
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}()
}

// logRefusal logs the first refusal after a quiet period of refusalLogEvery, with the number
// refused since the last line.
func (l *limitListener) logRefusal(client netip.Prefix, over string) {
	n := l.refused.Add(1)
	now := time.Now().UnixNano()
	last := l.lastLog.Load()
	if now-last < int64(refusalLogEvery) || !l.lastLog.CompareAndSwap(last, now) {
		return
	}
	l.refused.Add(-n)
	shown := client.String()
	if client.Addr().Is4() {
		shown = client.Addr().String()
	}
	l.cfg.Log.Warn("connection refused: over the connection cap", "cap", over, "client", shown,
		"max_connections", l.cfg.Total, "max_connections_per_ip", l.cfg.PerClient, "refused_since_last_line", n)
}

// limitedConn gives its place back when it is closed, once.
type limitedConn struct {
	net.Conn
	l         *limitListener
	client    netip.Prefix
	perClient bool
	once      sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.client, c.perClient) })
	return err
}

// CloseWrite half-closes the connection as *net.TCPConn does: net/http does so before closing
// a connection whose request it did not read to the end (a 413, say), so that the client
// reads the answer rather than a reset.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
