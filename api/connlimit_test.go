package api

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConnectionLimitClients: connections are counted per client address, IPv6 per /64 and
// IPv4-mapped addresses as IPv4; trusted proxies count toward the total only.
func TestConnectionLimitClients(t *testing.T) {
	t.Parallel()
	proxies, _ := ParseTrustedProxies("10.0.0.0/24, 2001:db8:ff::1")
	l := LimitConnections(nil, ConnectionLimits{Total: 100, PerClient: 2, TrustedProxies: proxies}).(*limitListener)
	tcp := func(s string) net.Addr { return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(s)) }
	for _, tt := range []struct {
		addr, key string
		perClient bool
	}{
		{"192.0.2.7:4711", "192.0.2.7/32", true},
		{"[::ffff:192.0.2.7]:1", "192.0.2.7/32", true},
		{"[2001:db8:1:2:aaaa::1]:1", "2001:db8:1:2::/64", true},
		{"[2001:db8:1:2:bbbb::9]:2", "2001:db8:1:2::/64", true},
		{"10.0.0.17:5", "10.0.0.17/32", false},
		{"[2001:db8:ff::1]:5", "2001:db8:ff::/64", false},
		{"[2001:db8:ff::2]:5", "2001:db8:ff::/64", true},
	} {
		key, per := l.client(tcp(tt.addr))
		if key.String() != tt.key || per != tt.perClient {
			t.Errorf("%s: counted as %s (per client %v), want %s (%v)", tt.addr, key, per, tt.key, tt.perClient)
		}
	}
	// Two addresses of one /64 share its cap; the proxy is not held to it.
	a, _ := l.client(tcp("[2001:db8:1:2:aaaa::1]:1"))
	b, _ := l.client(tcp("[2001:db8:1:2:bbbb::9]:2"))
	if l.admit(a, true) != "" || l.admit(b, true) != "" || l.admit(a, true) != "client" {
		t.Fatal("the /64 cap of 2 does not hold")
	}
	p, _ := l.client(tcp("10.0.0.17:5"))
	for i := 0; i < 10; i++ {
		if over := l.admit(p, false); over != "" {
			t.Fatalf("trusted proxy refused at %d: %s", i, over)
		}
	}
	if l.total != 12 {
		t.Fatalf("total %d, want 12", l.total)
	}
}

// TestConnectionLimitRefusal: over a cap, a plain connection gets the 503 answer and is closed;
// under TLS it is closed without a byte; closing an admitted connection twice gives its place
// back once; refusals are logged, a burst in one line.
func TestConnectionLimitRefusal(t *testing.T) {
	t.Parallel()
	for _, useTLS := range []bool{false, true} {
		inner, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		logged := &lockedLog{}
		l := LimitConnections(inner, ConnectionLimits{Total: 1, TLS: useTLS,
			Log: slog.New(slog.NewTextHandler(logged, nil))}).(*limitListener)
		accepted := make(chan net.Conn, 4)
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					close(accepted)
					return
				}
				accepted <- c
			}
		}()
		first, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		admitted := <-accepted
		if _, ok := admitted.(interface{ CloseWrite() error }); !ok {
			t.Fatal("an admitted connection cannot half-close: net/http would reset instead")
		}
		for i := 0; i < 3; i++ {
			over, err := net.Dial("tcp", inner.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			over.SetDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(over)
			over.Close()
			switch {
			case err != nil:
				t.Fatalf("tls=%v: reading a refused connection: %v", useTLS, err)
			case useTLS && len(got) != 0:
				t.Fatalf("tls: a refused connection received %q", got)
			case !useTLS && (!strings.HasPrefix(string(got), "HTTP/1.1 503 Service Unavailable\r\n") ||
				!strings.Contains(string(got), "\r\nRetry-After: 5\r\n") || !strings.HasSuffix(string(got), `"error_code":"KPS.6502","error_msg":"The service has too many connections open; retry later."}`)):
				t.Fatalf("refused connection received %q", got)
			}
		}
		if n := strings.Count(logged.String(), "connection refused"); n != 1 {
			t.Errorf("tls=%v: %d log lines for a burst of refusals: %s", useTLS, n, logged.String())
		}
		admitted.Close()
		admitted.Close()
		first.Close()
		l.mu.Lock()
		total := l.total
		l.mu.Unlock()
		if total != 0 {
			t.Fatalf("tls=%v: %d connections counted after the only one closed twice", useTLS, total)
		}
		second, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if c := <-accepted; c == nil {
			t.Fatal("the freed place was not given to the next connection")
		} else {
			c.Close()
		}
		second.Close()
		l.Close()
	}
}

// lockedLog is a log buffer written by the listener and read by the test.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
