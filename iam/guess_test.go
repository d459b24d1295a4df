package iam

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openkps/kps"
)

// The tests below hold the process-wide hash slots, so that the verifications they admit wait
// in the queue while the others are answered: what is admitted is then decided by the
// reservations alone, not by timing. They are not parallel.

// limiters are the two Limiters a Service may count with: its own memory, and the store's.
var limiters = map[string]func(fx *fixture) Limiter{
	"memory": func(*fixture) Limiter { return &MemoryLimiter{} },
	"store":  func(fx *fixture) Limiter { return fx.db.Lockouts() },
}

// outcome is how one of many concurrent logins ended.
type outcome struct {
	err error
}

// loginsAtOnce starts the logins at once and returns a channel of their outcomes.
func loginsAtOnce(fx *fixture, reqs []IssueRequest) <-chan outcome {
	out := make(chan outcome, len(reqs))
	start := make(chan struct{})
	for _, req := range reqs {
		go func() {
			<-start
			_, _, err := fx.svc.IssueToken(context.Background(), req)
			out <- outcome{err}
		}()
	}
	close(start)
	return out
}

// collect waits for n outcomes.
func collect(t *testing.T, out <-chan outcome, n int) []outcome {
	t.Helper()
	var got []outcome
	deadline := time.After(30 * time.Second)
	for len(got) < n {
		select {
		case o := <-out:
			got = append(got, o)
		case <-deadline:
			t.Fatalf("%d of %d logins answered", len(got), n)
		}
	}
	return got
}

// wantRefused checks that every outcome is 429 KPS.6105 with the reason.
func wantRefused(t *testing.T, got []outcome, reason string) {
	t.Helper()
	for _, o := range got {
		var l *LockoutError
		if !errors.As(o.err, &l) || l.Reason != reason || kps.ErrorCode(o.err) != kps.ErrLockedOut || l.Seconds < 1 {
			t.Fatalf("refusal %v, want KPS.6105 %s", o.err, reason)
		}
	}
}

// TestParallelGuessesAreReserved: guesses sent at once are admitted as guesses sent one after
// the other would be. For one user, one verification at a time: of 30 sent together, one is
// admitted and 29 are refused at once, before any hash. From one client, 30 per minute: of 60
// guesses for 60 names sent together, 30 are admitted and 30 refused, and the client is locked
// once the 30 have failed.
func TestParallelGuessesAreReserved(t *testing.T) {
	for name, limiter := range limiters {
		t.Run(name, func(t *testing.T) {
			fx := setup(t)
			fx.svc.Limiter = limiter(fx)
			fx.svc.LoginQueue = 100
			if _, err := fx.svc.dummyHash(context.Background()); err != nil {
				t.Fatal(err)
			}

			release := holdHashSlots(t)
			var reqs []IssueRequest
			for i := range 30 {
				req := byName("alice", "acme")
				req.ClientIP = clientA
				if i < 29 {
					req.Password = fmt.Sprint("guess-", i)
				}
				reqs = append(reqs, req)
			}
			out := loginsAtOnce(fx, reqs)
			wantRefused(t, collect(t, out, 29), ReasonAttemptInFlight)
			release()
			last := collect(t, out, 1)[0]
			if c := kps.ErrorCode(last.err); last.err != nil && c != kps.ErrLoginFailed {
				t.Fatalf("the admitted guess: %v", last.err)
			}

			release = holdHashSlots(t)
			reqs = reqs[:0]
			for i := range 60 {
				reqs = append(reqs, IssueRequest{Method: MethodPassword, UserName: fmt.Sprint("nobody-", i),
					UserDomainName: "acme", Password: "guess", ClientIP: clientB})
			}
			out = loginsAtOnce(fx, reqs)
			wantRefused(t, collect(t, out, 30), ReasonAttemptInFlight)
			release()
			for _, o := range collect(t, out, 30) {
				if kps.ErrorCode(o.err) != kps.ErrLoginFailed {
					t.Fatalf("an admitted guess: %v", o.err)
				}
			}
			req := byName("frank", "acme")
			req.ClientIP = clientB
			_, _, err := fx.svc.IssueToken(context.Background(), req)
			var l *LockoutError
			if !errors.As(err, &l) || l.Reason != ReasonLockedOut {
				t.Fatalf("the right password from a client with 30 failures this minute: %v, want locked-out", err)
			}
		})
	}
}

// TestLoginQueueIsBounded: with every hash slot taken, logins wait in a queue of LoginQueue
// places; the next is refused at once (429 KPS.6105, hash-queue-full, not counted as a guess),
// while a caller already authenticated still gets a slot before the queued logins.
func TestLoginQueueIsBounded(t *testing.T) {
	fx := setup(t)
	fx.svc.LoginQueue = 3
	if _, err := fx.svc.dummyHash(context.Background()); err != nil {
		t.Fatal(err)
	}
	release := holdHashSlots(t)
	var reqs []IssueRequest
	for i := range 10 {
		reqs = append(reqs, IssueRequest{Method: MethodPassword, UserName: fmt.Sprint("nobody-", i),
			UserDomainName: "acme", Password: "guess", ClientIP: fmt.Sprint("203.0.113.", i)})
	}
	out := loginsAtOnce(fx, reqs)
	refused := collect(t, out, 7)
	wantRefused(t, refused, ReasonHashQueueFull)
	wantCode(t, refused[0].err, kps.ErrLockedOut, "")
	if msg := kps.ErrorMessage(refused[0].err); !strings.HasPrefix(msg, "Too many authentication attempts in progress; retry after ") {
		t.Fatalf("message %q", msg)
	}

	// A password change waits for a slot too, but goes before the queued logins.
	changed := make(chan error, 1)
	alice := &kps.Principal{UserID: fx.users["alice"].ID, AuthMethod: kps.AuthToken}
	go func() {
		changed <- fx.svc.ChangePassword(context.Background(), alice, alice.UserID, password, "Another-correct-horse-9", clientA)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		hashing.mu.Lock()
		n := len(hashing.waitPriority)
		hashing.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the password change is not waiting for a slot")
		}
		time.Sleep(time.Millisecond)
	}
	release()
	select {
	case err := <-changed:
		if err != nil {
			t.Fatalf("password change during a login flood: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the password change never got a slot")
	}
	for _, o := range collect(t, out, 3) {
		if kps.ErrorCode(o.err) != kps.ErrLoginFailed {
			t.Fatalf("a queued login: %v", o.err)
		}
	}
}

// TestHashGate: anonymous computations hold at most their share of the slots and wait in a
// bounded queue; priority ones go first; a waiter whose context ends leaves the queue.
func TestHashGate(t *testing.T) {
	t.Parallel()
	g := newHashGate(4) // 2 slots open to anonymous computations
	anon := hashClass{anonymous: true, queue: 2}
	ctx := context.Background()
	var releases []func()
	for range 2 {
		r, err := g.acquire(ctx, anon)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	// A third anonymous computation waits although two slots are free.
	waiting := make(chan func(), 2)
	for range 2 {
		go func() {
			r, err := g.acquire(ctx, anon)
			if err != nil {
				t.Error(err)
			}
			waiting <- r
		}()
	}
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.waitAnon) == 2 })
	if _, err := g.acquire(ctx, anon); !errors.As(err, new(*LockoutError)) {
		t.Fatalf("a third anonymous waiter: %v, want hash-queue-full", err)
	}
	// Priority computations take the free slots at once.
	for range 2 {
		r, err := g.acquire(ctx, priority)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	// With every slot taken, a priority waiter is served before the anonymous ones.
	prio := make(chan func(), 1)
	go func() {
		r, _ := g.acquire(ctx, priority)
		prio <- r
	}()
	waitFor(t, func() bool { g.mu.Lock(); defer g.mu.Unlock(); return len(g.waitPriority) == 1 })
	releases[0]() // an anonymous slot frees
	r := <-prio
	select {
	case <-waiting:
		t.Fatal("an anonymous waiter overtook a priority one")
	default:
	}
	r()
	// Now the first anonymous waiter goes; the other stays (two anonymous slots held).
	(<-waiting)()
	releases[1]()
	(<-waiting)()
	// A waiter whose context ends leaves the queue and takes no slot.
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	g2 := newHashGate(1)
	hold, _ := g2.acquire(ctx, priority)
	if _, err := g2.acquire(short, anon); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiter with a deadline: %v", err)
	}
	hold()
	if g2.running != 0 || len(g2.waitAnon) != 0 {
		t.Fatalf("gate left with %d running, %d waiting", g2.running, len(g2.waitAnon))
	}
	releases[2]()
	releases[3]()
	if g.running != 0 {
		t.Fatalf("%d computations still counted", g.running)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPasswordChangeCountsAsLogin: a wrong original password is a failed login of the user
// (429 after five, for a login too, from any address); a temporary credential may not change a
// password at all.
func TestPasswordChangeCountsAsLogin(t *testing.T) {
	t.Parallel()
	for name, limiter := range limiters {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fx := setup(t)
			fx.svc.Limiter = limiter(fx)
			ctx := context.Background()
			alice := &kps.Principal{UserID: fx.users["alice"].ID, AuthMethod: kps.AuthToken}
			change := func(original, ip string) error {
				return fx.svc.ChangePassword(ctx, alice, alice.UserID, original, "Another-correct-horse-9", ip)
			}
			temp := *alice
			temp.AuthMethod = kps.AuthAKSKTemporary
			err := fx.svc.ChangePassword(ctx, &temp, alice.UserID, password, "Another-correct-horse-9", clientA)
			wantCode(t, err, kps.ErrForbidden, msgForbidden)
			var f *Failure
			if !errors.As(err, &f) || f.Reason != "temporary-credential" {
				t.Fatalf("refusal of a temporary credential: %v", err)
			}
			for i := range 5 {
				err := change(fmt.Sprint("wrong-", i), clientA)
				wantCode(t, err, kps.ErrLoginFailed, msgLoginFailed)
				if !errors.As(err, &f) || f.User != alice.UserID || f.Reason != "password-wrong" {
					t.Fatalf("refusal %d: %+v", i+1, err)
				}
			}
			wantCode(t, change(password, clientB), kps.ErrLockedOut, "")
			req := byName("alice", "acme")
			req.ClientIP = clientB
			_, _, err = fx.svc.IssueToken(ctx, req)
			wantCode(t, err, kps.ErrLockedOut, "")
			fx.clock.Add(5 * time.Minute)
			if err := change(password, clientB); err != nil {
				t.Fatalf("after the lock: %v", err)
			}
		})
	}
}

// TestTokenCapPerUserService: the Service passes its cap to the store; the oldest token dies.
func TestTokenCapPerUserService(t *testing.T) {
	t.Parallel()
	fx := setup(t)
	fx.svc.MaxTokensPerUser = 3
	ctx := context.Background()
	var toks []string
	for range 4 {
		tok, _ := fx.issue(t, byName("alice", "acme"))
		toks = append(toks, tok)
		fx.clock.Add(time.Second)
	}
	_, err := fx.svc.Authenticate(ctx, toks[0], fx.id(p1), clientA)
	wantCode(t, err, kps.ErrBadCredentials, "Incorrect authentication information: the token has been revoked.")
	for _, tok := range toks[1:] {
		if _, err := fx.svc.Authenticate(ctx, tok, fx.id(p1), clientA); err != nil {
			t.Fatalf("a newer token: %v", err)
		}
	}
	if fx.svc.maxTokensPerUser() != 3 || (&Service{}).maxTokensPerUser() != DefaultMaxTokensPerUser ||
		(&Service{MaxTokensPerUser: -1}).maxTokensPerUser() != 0 {
		t.Fatal("maxTokensPerUser")
	}
}

// TestConcurrentRefusalsAnswerAsInSequence: signature mismatches and unknown tokens are not
// reserved (their check is cheap and guesses nothing), but a burst of them gets no more 401
// answers than a sequence would: 5 mismatches per (AK, client IP), 30 refusals per client IP;
// the others are told 429, and the lock holds afterwards.
func TestConcurrentRefusalsAnswerAsInSequence(t *testing.T) {
	t.Parallel()
	for name, limiter := range limiters {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fx := setupSigning(t)
			fx.svc.Limiter = limiter(fx.fixture)
			ak, sk := fx.accessKey(t, "alice", kps.AccessKeyActive)
			wrong := sk[:39] + "X"
			var reqs []*http.Request
			for range 40 {
				reqs = append(reqs, fx.request(t, "GET", fx.kpsPath(p1), nil, ak, wrong, nil))
			}
			codes := make([]string, len(reqs))
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i, r := range reqs {
				wg.Go(func() {
					<-start
					_, err := fx.authenticate(r, nil, p1, clientA)
					codes[i] = kps.ErrorCode(err)
				})
			}
			close(start)
			wg.Wait()
			n := map[string]int{}
			for _, c := range codes {
				n[c]++
			}
			if n[kps.ErrBadCredentials] > 5 || n[kps.ErrBadCredentials]+n[kps.ErrLockedOut] != 40 {
				t.Fatalf("40 signature mismatches at once: %v; want at most 5 KPS.6102, the rest KPS.6105", n)
			}
			_, err := fx.authenticate(fx.request(t, "GET", fx.kpsPath(p1), nil, ak, sk, nil), nil, p1, clientA)
			wantCode(t, err, kps.ErrLockedOut, "")

			codes = make([]string, 60)
			for i := range codes {
				wg.Go(func() {
					_, err := fx.svc.Authenticate(context.Background(), fmt.Sprint("KPT1unknown-", i), fx.id(p1), clientB)
					codes[i] = kps.ErrorCode(err)
				})
			}
			wg.Wait()
			n = map[string]int{}
			for _, c := range codes {
				n[c]++
			}
			if n[kps.ErrBadCredentials] > 30 || n[kps.ErrBadCredentials]+n[kps.ErrLockedOut] != 60 {
				t.Fatalf("60 unknown tokens at once from one client: %v; want at most 30 KPS.6102, the rest KPS.6105", n)
			}
		})
	}
}
