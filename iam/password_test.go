package iam

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHashPasswordDefaultFormat(t *testing.T) {
	t.Parallel()
	h, err := HashPassword("Tr0ub4dor&3")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`^\$argon2id\$v=19\$m=65536,t=3,p=4\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !re.MatchString(h) {
		t.Fatalf("hash %q is not the RFC 9106 PHC string", h)
	}
	ok, rehash, err := VerifyPassword(h, "Tr0ub4dor&3")
	if err != nil || !ok || rehash {
		t.Fatalf("VerifyPassword = %v, %v, %v", ok, rehash, err)
	}
	if ok, _, _ := VerifyPassword(h, "Tr0ub4dor&4"); ok {
		t.Fatal("a wrong password verified")
	}
}

func TestVerifyPassword(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h, err := cheap.Hash(ctx, "pässwörd")
	if err != nil {
		t.Fatal(err)
	}
	if h2, _ := cheap.Hash(ctx, "pässwörd"); h2 == h {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	for _, tt := range []struct {
		pw     string
		params Params
		ok     bool
		rehash bool
	}{
		{"pässwörd", cheap, true, false},
		{"pässwörd", Params{MemoryKiB: 128, Iterations: 1, Parallelism: 1}, true, true},
		{"pässwörd", Params{MemoryKiB: 64, Iterations: 2, Parallelism: 1}, true, true},
		{"pässwörd", Params{MemoryKiB: 32, Iterations: 1, Parallelism: 1}, true, false},
		{"pässwörd", Params{MemoryKiB: 64, Iterations: 1, Parallelism: 2}, true, false},
		{"passwörd", cheap, false, false},
		{"", cheap, false, false},
		{"pässwörd ", Params{MemoryKiB: 128, Iterations: 1, Parallelism: 1}, false, false},
	} {
		ok, rehash, err := tt.params.Verify(ctx, h, tt.pw)
		if err != nil || ok != tt.ok || rehash != tt.rehash {
			t.Errorf("Verify(%q) under %+v = %v, %v, %v; want %v, %v", tt.pw, tt.params, ok, rehash, err, tt.ok, tt.rehash)
		}
	}
	// The zero Params are the defaults, so a cheap hash needs a rehash there.
	if ok, rehash, _ := (Params{}).Verify(ctx, h, "pässwörd"); !ok || !rehash {
		t.Errorf("default params: ok=%v rehash=%v, want true true", ok, rehash)
	}
}

func TestVerifyPasswordRejectsMalformedHashes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	good, _ := cheap.Hash(ctx, "pw")
	f := strings.Split(good, "$")
	for _, h := range []string{
		"",
		"plaintext",
		"$2a$12$abcdefghijklmnopqrstuuWcVYqZ.bOjMtfDs2pLoa6E3uiRnlCjW", // bcrypt
		strings.Replace(good, "argon2id", "argon2i", 1),
		strings.Replace(good, "v=19", "v=16", 1),
		strings.Join([]string{"", f[1], f[2], "m=67108864,t=1,p=1", f[4], f[5]}, "$"), // 64 GiB
		strings.Join([]string{"", f[1], f[2], "m=64,t=0,p=1", f[4], f[5]}, "$"),
		strings.Join([]string{"", f[1], f[2], "m=64,t=1,p=0", f[4], f[5]}, "$"),
		strings.Join([]string{"", f[1], f[2], "m=64,t=1,p=1,x=2", f[4], f[5]}, "$"),
		strings.Join([]string{"", f[1], f[2], "m=064,t=1,p=1", f[4], f[5]}, "$"),
		strings.Join([]string{"", f[1], f[2], f[3], "!!!", f[5]}, "$"),
		strings.Join([]string{"", f[1], f[2], f[3], f[4], "short"}, "$"),
		good + "$extra",
	} {
		ok, _, err := cheap.Verify(ctx, h, "pw")
		if ok || err == nil {
			t.Errorf("Verify accepted hash %q: ok=%v err=%v", h, ok, err)
		}
		if err != nil && h != "" && strings.Contains(err.Error(), h) {
			t.Errorf("error %q quotes the hash", err)
		}
	}
}

// holdHashSlots takes every slot of the process's hash gate, as computations in progress would,
// and returns their release.
func holdHashSlots(t *testing.T) (release func()) {
	t.Helper()
	var releases []func()
	for range hashing.slots {
		r, err := hashing.acquire(context.Background(), priority)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	return func() {
		for _, r := range releases {
			r()
		}
	}
}

// Not parallel: it holds the process-wide hashing slots.
func TestHashingIsBounded(t *testing.T) {
	release := holdHashSlots(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := cheap.Hash(ctx, "pw")
	release()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hashing with every slot taken: %v, want to wait until the deadline", err)
	}
	if _, err := cheap.Hash(context.Background(), "pw"); err != nil {
		t.Fatalf("after the slots are free: %v", err)
	}
}

// TestHashMemoryIsReturned: the memory of the computations of a burst is handed back to the
// kernel once, a little after the last of them, and not while one runs.
func TestHashMemoryIsReturned(t *testing.T) {
	g := newHashGate(2)
	var mu sync.Mutex
	var calls []int // computations running at each return
	g.release = func() {
		g.mu.Lock()
		running := g.running
		g.mu.Unlock()
		mu.Lock()
		calls = append(calls, running)
		mu.Unlock()
	}
	for range 5 {
		release, err := g.acquire(t.Context(), priority)
		if err != nil {
			t.Fatal(err)
		}
		release()
		g.returnMemory()
	}
	// A computation still running when the delay is over holds the return back.
	release, err := g.acquire(t.Context(), priority)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * freeDelay) // longer than the delay: nothing may be returned meanwhile
	mu.Lock()
	early := len(calls)
	mu.Unlock()
	release()
	g.returnMemory()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(calls)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	mu.Lock()
	defer mu.Unlock()
	if early != 0 || len(calls) != 1 || calls[0] != 0 {
		t.Fatalf("returns %v (%d while a computation ran), want one, with none running", calls, early)
	}
}
