package iam

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openkps/kps"
	"golang.org/x/crypto/argon2"
)

// Params are the Argon2id cost parameters of new password hashes. The zero value means the
// second recommended set of RFC 9106 (auth.md §12.1): 64 MiB, 3 passes, 4 lanes. Tests use
// cheaper ones.
type Params struct {
	MemoryKiB   uint32
	Iterations  uint32
	Parallelism uint8
}

const (
	saltLen = 16
	tagLen  = 32
	// Bounds on what a stored hash may ask for, so that a corrupt row cannot exhaust memory.
	maxMemoryKiB  = 4 << 20
	maxIterations = 64
)

func (p Params) orDefault() Params {
	if p == (Params{}) {
		return Params{MemoryKiB: 64 << 10, Iterations: 3, Parallelism: 4}
	}
	return p
}

// hashing bounds the Argon2id computations of this process (auth.md §12.1). It is a package
// variable because the limit is about this process, whatever Service values exist.
var hashing = newHashGate(runtime.NumCPU())

// hashClass says how a computation waits for a slot of the hashGate.
type hashClass struct {
	// anonymous: a login's verification, for a caller nobody has authenticated yet.
	anonymous bool
	// queue bounds the anonymous computations waiting for a slot; one more is refused.
	queue int
}

// priority is the class of a computation for a caller already authenticated (a password
// change, a new user's password, the rehash after a login) or for the service itself.
var priority = hashClass{}

// hashGate hands out the slots of Argon2id computations. Each computation holds MemoryKiB of
// RAM and keeps the cores busy for its passes, so a login flood must not queue without bound
// (memory, and a legitimate login waiting behind it for tens of seconds) nor take every slot.
// Anonymous computations may hold at most anonSlots of the slots and wait in a queue of
// bounded length; one that finds the queue full is refused at once (429 KPS.6105 with
// Retry-After). Priority computations are never refused and go before every anonymous one
// waiting, so that anonymous clients cannot take the CPU from authenticated callers; what is
// left of the cores is shared by the Go scheduler with the task workers.
type hashGate struct {
	slots, anonSlots int

	mu           sync.Mutex
	running      int
	runningAnon  int
	waitPriority []*hashWaiter
	waitAnon     []*hashWaiter
	// took is a moving average of one computation, for the Retry-After of a refusal.
	took time.Duration
	// freeing: a return of the computations' memory is pending (returnMemory); release returns
	// it (debug.FreeOSMemory when nil).
	freeing atomic.Bool
	release func()
}

type hashWaiter struct {
	anonymous bool
	granted   bool
	ready     chan struct{}
}

// newHashGate returns a gate of n slots, half of them (at least one) open to anonymous
// computations.
func newHashGate(n int) *hashGate {
	n = max(1, n)
	return &hashGate{slots: n, anonSlots: max(1, n/2)}
}

// defaultLoginQueue is the length of the anonymous queue when a Service names none: four
// computations waiting per anonymous slot, so that an admitted login waits for at most five
// computations' time.
func (g *hashGate) defaultLoginQueue() int { return 4 * g.anonSlots }

// acquire waits for a slot of class c and returns its release, or refuses: ctx ended, or the
// anonymous queue is full (*LockoutError, ReasonHashQueueFull).
func (g *hashGate) acquire(ctx context.Context, c hashClass) (release func(), err error) {
	g.mu.Lock()
	if g.free(c.anonymous) {
		g.start(c.anonymous)
		g.mu.Unlock()
		return g.releaser(c.anonymous), nil
	}
	if c.anonymous && len(g.waitAnon) >= c.queue {
		wait := g.took * time.Duration(len(g.waitAnon)/g.anonSlots+1)
		g.mu.Unlock()
		return nil, hashQueueFull(wait)
	}
	w := &hashWaiter{anonymous: c.anonymous, ready: make(chan struct{})}
	if c.anonymous {
		g.waitAnon = append(g.waitAnon, w)
	} else {
		g.waitPriority = append(g.waitPriority, w)
	}
	g.mu.Unlock()
	select {
	case <-w.ready:
		return g.releaser(c.anonymous), nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if w.granted {
		// Granted while ctx ended: hand the slot on.
		g.finish(w.anonymous, 0)
		return nil, ctx.Err()
	}
	if c.anonymous {
		g.waitAnon = slices.DeleteFunc(g.waitAnon, func(x *hashWaiter) bool { return x == w })
	} else {
		g.waitPriority = slices.DeleteFunc(g.waitPriority, func(x *hashWaiter) bool { return x == w })
	}
	return nil, ctx.Err()
}

// free reports whether a computation may start now without overtaking a waiter; g.mu is held.
func (g *hashGate) free(anonymous bool) bool {
	if g.running >= g.slots || len(g.waitPriority) > 0 {
		return false
	}
	return !anonymous || (g.runningAnon < g.anonSlots && len(g.waitAnon) == 0)
}

func (g *hashGate) start(anonymous bool) {
	g.running++
	if anonymous {
		g.runningAnon++
	}
}

func (g *hashGate) releaser(anonymous bool) func() {
	began := time.Now()
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.finish(anonymous, time.Since(began))
	}
}

// finish frees a slot and hands it to the first priority waiter, else to the first anonymous
// one if anonymous computations may take one more slot; g.mu is held. took is zero when
// nothing was computed.
func (g *hashGate) finish(anonymous bool, took time.Duration) {
	g.running--
	if anonymous {
		g.runningAnon--
	}
	switch {
	case took <= 0:
	case g.took == 0:
		g.took = took
	default:
		g.took = (7*g.took + took) / 8
	}
	for g.running < g.slots {
		var w *hashWaiter
		switch {
		case len(g.waitPriority) > 0:
			w, g.waitPriority = g.waitPriority[0], g.waitPriority[1:]
		case len(g.waitAnon) > 0 && g.runningAnon < g.anonSlots:
			w, g.waitAnon = g.waitAnon[0], g.waitAnon[1:]
		default:
			return
		}
		g.start(w.anonymous)
		w.granted = true
		close(w.ready)
	}
}

// hashQueueFull refuses a login that finds the queue of password verifications full.
func hashQueueFull(wait time.Duration) *LockoutError {
	n := max(1, int(math.Ceil(wait.Seconds())))
	return &LockoutError{Seconds: n, Reason: ReasonHashQueueFull, Err: kps.Errorf(kps.ErrLockedOut,
		"Too many authentication attempts in progress; retry after %d seconds.", n)}
}

func idKey(ctx context.Context, c hashClass, pw, salt []byte, p Params, n uint32) ([]byte, error) {
	release, err := hashing.acquire(ctx, c)
	if err != nil {
		return nil, err
	}
	defer hashing.returnMemory()
	defer release()
	return argon2.IDKey(pw, salt, p.Iterations, p.MemoryKiB, p.Parallelism, n), nil
}

// returnMemory hands the memory of finished computations back to the kernel once none runs.
// Each computation allocates MemoryKiB (64 MiB), garbage once it returns, which the Go
// runtime would keep for minutes for reuse: `kps serve` went from 18 MiB to 84 MiB with one
// login and stayed there, and to 147 MiB after its first start (the admin's password hashed,
// then verified at the first login), above the 150 MB a fleet bind may use (issue 18). A
// forced collection and release costs a millisecond or so with the service's small heap; it
// runs at most once per freeDelay, a little after the last computation of a burst ended.
func (g *hashGate) returnMemory() {
	if !g.freeing.CompareAndSwap(false, true) {
		return // one is pending: it looks after this computation too
	}
	time.AfterFunc(freeDelay, func() {
		g.freeing.Store(false)
		g.mu.Lock()
		idle := g.running == 0
		g.mu.Unlock()
		if idle {
			if g.release != nil {
				g.release()
			} else {
				debug.FreeOSMemory()
			}
		} else {
			g.returnMemory() // the last computation running frees when it ends (or this, later)
		}
	})
}

// freeDelay is how long after a computation its memory is returned: logins of a burst share
// one collection.
const freeDelay = 200 * time.Millisecond

// HashPassword returns the Argon2id PHC string of pw with the default parameters,
// "$argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash>".
func HashPassword(pw string) (string, error) { return Params{}.Hash(context.Background(), pw) }

// VerifyPassword checks pw against a PHC string in constant time; needsRehash reports a match
// whose stored parameters are weaker than the defaults.
func VerifyPassword(hash, pw string) (ok, needsRehash bool, err error) {
	return Params{}.Verify(context.Background(), hash, pw)
}

// Hash returns the Argon2id PHC string of pw under p, computed with priority over logins.
func (p Params) Hash(ctx context.Context, pw string) (string, error) {
	return p.hash(ctx, priority, pw)
}

func (p Params) hash(ctx context.Context, c hashClass, pw string) (string, error) {
	p = p.orDefault()
	salt := make([]byte, saltLen)
	rand.Read(salt)
	tag, err := idKey(ctx, c, []byte(pw), salt, p, tagLen)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Iterations,
		p.Parallelism, b64.EncodeToString(salt), b64.EncodeToString(tag)), nil
}

var b64 = base64.RawStdEncoding

// errBadHash never quotes the hash.
var errBadHash = errors.New("iam: the stored password hash is not an Argon2id PHC string")

// Verify checks pw against a PHC string in constant time. needsRehash reports a match whose
// stored parameters are weaker than p (less memory, fewer passes, a shorter salt or tag), so
// that the caller can store a new hash. It is computed with priority over logins.
func (p Params) Verify(ctx context.Context, hash, pw string) (ok, needsRehash bool, err error) {
	return p.verify(ctx, priority, hash, pw)
}

func (p Params) verify(ctx context.Context, c hashClass, hash, pw string) (ok, needsRehash bool, err error) {
	p = p.orDefault()
	stored, salt, tag, err := parsePHC(hash)
	if err != nil {
		return false, false, err
	}
	got, err := idKey(ctx, c, []byte(pw), salt, stored, uint32(len(tag)))
	if err != nil {
		return false, false, err
	}
	if subtle.ConstantTimeCompare(got, tag) != 1 {
		return false, false, nil
	}
	weaker := stored.MemoryKiB < p.MemoryKiB || stored.Iterations < p.Iterations ||
		len(salt) < saltLen || len(tag) < tagLen
	return true, weaker, nil
}

func parsePHC(s string) (p Params, salt, tag []byte, err error) {
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" || f[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return p, nil, nil, errBadHash
	}
	var m, t, par uint32
	if n, e := fmt.Sscanf(f[3], "m=%d,t=%d,p=%d", &m, &t, &par); e != nil || n != 3 ||
		f[3] != fmt.Sprintf("m=%d,t=%d,p=%d", m, t, par) {
		return p, nil, nil, errBadHash
	}
	if m < 8*par || m > maxMemoryKiB || t < 1 || t > maxIterations || par < 1 || par > 255 {
		return p, nil, nil, errBadHash
	}
	if salt, err = b64.DecodeString(f[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, errBadHash
	}
	if tag, err = b64.DecodeString(f[5]); err != nil || len(tag) < 16 || len(tag) > 64 {
		return p, nil, nil, errBadHash
	}
	return Params{MemoryKiB: m, Iterations: t, Parallelism: uint8(par)}, salt, tag, nil
}
