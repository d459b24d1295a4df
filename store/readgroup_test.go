package store

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadGroupNeverStale: every caller first commits a change (the counter moves), then asks;
// the value it gets must include its own change, whichever shared read answered it. Reads take
// a while, so callers pile up behind the read in flight and share the next one.
func TestReadGroupNeverStale(t *testing.T) {
	var g readGroup
	var state, reads atomic.Int64
	read := func(ctx context.Context) ([3]int64, error) {
		reads.Add(1)
		v := state.Load() // the snapshot is taken when the read starts
		time.Sleep(time.Millisecond)
		return [3]int64{v, 0, 0}, nil
	}
	const callers, rounds = 32, 50
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for range rounds {
				mine := state.Add(1)
				v, err := g.do(t.Context(), read, "p", "k")
				if err != nil {
					t.Error(err)
					return
				}
				if v[0] < mine {
					t.Errorf("read %d, older than the change %d committed before asking", v[0], mine)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := reads.Load(); n >= callers*rounds/2 {
		t.Errorf("%d reads for %d requests: hardly shared", n, callers*rounds)
	} else {
		t.Logf("%d reads for %d requests", n, callers*rounds)
	}
	// The reads clean their slot up just after answering.
	for deadline := time.Now().Add(time.Second); ; time.Sleep(time.Millisecond) {
		g.mu.Lock()
		n := len(g.m)
		g.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d slots left after every read ended", n)
			break
		}
	}
}

// TestReadGroupKeys: different keys never share a read; an error reaches every sharer; a caller
// whose context ends stops waiting, and the others still get their answer.
func TestReadGroupKeys(t *testing.T) {
	var g readGroup
	release := make(chan struct{})
	started := make(chan string, 10)
	read := func(key string, err error) func(context.Context) ([3]int64, error) {
		return func(ctx context.Context) ([3]int64, error) {
			started <- key
			<-release
			return [3]int64{int64(len(key))}, err
		}
	}
	// a and b: separate reads, both in flight at once.
	var wg sync.WaitGroup
	got := make([]int64, 2)
	for i, k := range []string{"a", "bb"} {
		wg.Go(func() {
			v, _ := g.do(t.Context(), read(k, nil), k)
			got[i] = v[0]
		})
	}
	<-started
	<-started
	close(release)
	wg.Wait()
	if got[0] != 1 || got[1] != 2 {
		t.Errorf("keys answered %v, want [1 2]", got)
	}

	// An error, shared: the first read is in flight, three callers queue behind it.
	release = make(chan struct{})
	boom := errors.New("boom")
	first := make(chan error, 1)
	go func() {
		_, err := g.do(t.Context(), read("k", nil), "k")
		first <- err
	}()
	<-started
	errs := make(chan error, 3)
	ctx, cancel := context.WithCancel(t.Context())
	for i := range 3 {
		c := t.Context()
		if i == 0 {
			c = ctx
		}
		go func() {
			_, err := g.do(c, read("k", boom), "k")
			errs <- err
		}()
	}
	time.Sleep(20 * time.Millisecond) // let them queue
	cancel()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Errorf("the cancelled caller got %v", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Errorf("first read: %v", err)
	}
	<-started // the queued read, shared by the two callers left
	for range 2 {
		if err := <-errs; !errors.Is(err, boom) {
			t.Errorf("a sharer got %v, want the read's error", err)
		}
	}
	select {
	case k := <-started:
		t.Errorf("a third read of %q: the queued callers did not share", k)
	default:
	}
}
