package store

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"
)

// readGroup lets concurrent requests share the per-request read of ReadRequest on
// PostgreSQL: under load, the round trip is most of what a cached request costs the service
// and the database. Sharing must not make a request see a state older than the request: a
// request may only use a read that started after it asked. So per set of arguments there is
// at most one read in flight and one waiting to start: a request joins the waiting one (which
// will start after the request asked), or becomes it and starts once the read in flight ends.
// A request that finds nothing in flight reads at once, as without the group.
// (golang.org/x/sync/singleflight lets a caller join the call in flight, which may have started
// before the caller asked: exactly what must not happen here.)
type readGroup struct {
	mu sync.Mutex
	m  map[string]*readSlot
}

// readSlot is the state of one set of arguments.
type readSlot struct {
	inflight *readCall // started
	pending  *readCall // not started: requests that join it asked before it starts
}

type readCall struct {
	done chan struct{}
	vals [3]int64
	err  error
}

// sharedReadTimeout bounds a read that several requests wait for: it runs without the
// context of the request that started it, which may end first.
const sharedReadTimeout = 10 * time.Second

// do returns what read returns, from a call of read that started after do was called; calls
// with the same key share one.
func (g *readGroup) do(ctx context.Context, read func(ctx context.Context) ([3]int64, error), key ...string) ([3]int64, error) {
	var b strings.Builder
	for _, p := range key {
		b.WriteString(strconv.Itoa(len(p)))
		b.WriteByte(':')
		b.WriteString(p)
	}
	k := b.String()
	g.mu.Lock()
	if g.m == nil {
		g.m = make(map[string]*readSlot)
	}
	s := g.m[k]
	if s == nil {
		s = &readSlot{}
		g.m[k] = s
	}
	var wait *readCall // the read in flight that the new one waits for
	c, starts := s.pending, true
	switch {
	case c != nil: // join the read that has not started
		starts = false
	case s.inflight != nil: // the next read, once this one ends
		c = &readCall{done: make(chan struct{})}
		s.pending, wait = c, s.inflight
	default: // nothing in flight: read now
		c = &readCall{done: make(chan struct{})}
		s.inflight = c
	}
	g.mu.Unlock()
	if starts {
		// This request starts the read; it runs on its own, so that the requests that share it
		// do not depend on this one's context.
		go g.run(context.WithoutCancel(ctx), k, s, c, wait, read)
	}
	select {
	case <-c.done:
		return c.vals, c.err
	case <-ctx.Done():
		return [3]int64{}, ctx.Err()
	}
}

// run makes the read c of slot s, after the read wait (if any) ended.
func (g *readGroup) run(ctx context.Context, k string, s *readSlot, c, wait *readCall, read func(context.Context) ([3]int64, error)) {
	if wait != nil {
		<-wait.done // bounded by sharedReadTimeout
		g.mu.Lock()
		s.pending, s.inflight = nil, c // from now on, new requests join the next read
		g.mu.Unlock()
	}
	rctx, cancel := context.WithTimeout(ctx, sharedReadTimeout)
	c.vals, c.err = read(rctx)
	cancel()
	close(c.done)
	g.mu.Lock()
	if s.inflight == c {
		s.inflight = nil
		if s.pending == nil {
			delete(g.m, k)
		}
	}
	g.mu.Unlock()
}
