// Package hostilessh is an in-process SSH server for tests that plays a hostile host. It
// records every authentication attempt a client makes — the method, the user and the secret
// itself (a password, a keyboard-interactive answer, the offered public key) — so a test can
// show what the service handed to a host it should not have trusted. What it does after that
// is the test's choice (Behavior): refuse every login, or accept any login and then stall,
// print without end, or answer every command with a fixed output.
//
// Real hosts are real sshd processes (internal/sshdtest); this server exists for what no
// honest sshd does. Test code only; it imports nothing from this repository.
package hostilessh

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Behavior is what the server does with a client.
type Behavior int

const (
	// Refuse records every attempt and refuses every login.
	Refuse Behavior = iota
	// Stall accepts any login; sessions open and commands start, but nothing is ever
	// answered until the client gives up.
	Stall
	// Flood accepts any login; every command prints without end.
	Flood
	// Fake accepts any login; every command gets Options.Output and Options.ExitStatus.
	Fake
)

// Options configure a server.
type Options struct {
	Behavior   Behavior
	Output     []byte // Fake: what every command prints on stdout
	ExitStatus uint32 // Fake: every command's exit status
}

// Attempt is one authentication attempt as the server saw it.
type Attempt struct {
	Method string // "none", "password", "publickey", "keyboard-interactive"
	User   string
	// Credential says the attempt carried a secret or a key: a password, an offered public
	// key (with or without a signature), or answers to keyboard-interactive questions.
	Credential bool
	// Secret is what came in clear: the password, the keyboard-interactive answers joined by
	// newlines, or the offered public key in authorized_keys form.
	Secret string
}

// Server is a listening hostile host.
type Server struct {
	Address string
	Port    int
	// HostKey is the key the server presents, in authorized_keys form.
	HostKey string

	opt      Options
	ln       net.Listener
	mu       sync.Mutex
	attempts []Attempt
	conns    int
	commands int
	sent     int64
	done     chan struct{}
	wg       sync.WaitGroup
}

// Start listens on 127.0.0.1 with a fresh ed25519 host key until the test ends.
func Start(t testing.TB, opt Options) *Server {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Address: "127.0.0.1",
		Port:    ln.Addr().(*net.TCPAddr).Port,
		HostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))),
		opt:     opt,
		ln:      ln,
		done:    make(chan struct{}),
	}
	refuse := errors.New("recorded, refused")
	verdict := func() (*ssh.Permissions, error) {
		if opt.Behavior == Refuse {
			return nil, refuse
		}
		return &ssh.Permissions{}, nil
	}
	cfg := &ssh.ServerConfig{
		PasswordCallback: func(c ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
			s.record(Attempt{Method: "password", User: c.User(), Credential: true, Secret: string(password)})
			return verdict()
		},
		PublicKeyCallback: func(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			s.record(Attempt{Method: "publickey", User: c.User(), Credential: true,
				Secret: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))})
			return verdict()
		},
		KeyboardInteractiveCallback: func(c ssh.ConnMetadata, ask ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			answers, err := ask(c.User(), "", []string{"Password: "}, []bool{false})
			s.record(Attempt{Method: "keyboard-interactive", User: c.User(),
				Credential: err == nil && len(answers) > 0, Secret: strings.Join(answers, "\n")})
			return verdict()
		},
		// Every method the client tries, "none" included; the callbacks above record those
		// that carried a credential.
		AuthLogCallback: func(c ssh.ConnMetadata, method string, err error) {
			if method == "none" {
				s.record(Attempt{Method: method, User: c.User()})
			}
		},
		ServerVersion: "SSH-2.0-OpenSSH_9.2p1 hostilessh",
	}
	cfg.AddHostKey(signer)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				go func() { <-s.done; c.Close() }()
				sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
				if err != nil {
					return // the client gave up, or every method was refused
				}
				defer sc.Close()
				go ssh.DiscardRequests(reqs)
				for ch := range chans {
					if ch.ChannelType() != "session" {
						ch.Reject(ssh.UnknownChannelType, "sessions only")
						continue
					}
					channel, requests, err := ch.Accept()
					if err != nil {
						return
					}
					s.wg.Add(1)
					go func() {
						defer s.wg.Done()
						s.serveSession(channel, requests)
					}()
				}
			}()
		}
	}()
	t.Cleanup(s.Close)
	return s
}

// serveSession answers a session's requests as the behaviour says.
func (s *Server) serveSession(ch ssh.Channel, requests <-chan *ssh.Request) {
	defer ch.Close()
	for req := range requests {
		switch req.Type {
		case "exec", "shell", "subsystem":
		default:
			req.Reply(req.Type == "env" || req.Type == "pty-req", nil)
			continue
		}
		req.Reply(true, nil)
		s.mu.Lock()
		s.commands++
		s.mu.Unlock()
		switch s.opt.Behavior {
		case Stall:
			// Read whatever the client sends and never answer.
			go func() {
				buf := make([]byte, 32<<10)
				for {
					if _, err := ch.Read(buf); err != nil {
						return
					}
				}
			}()
			<-s.done
			return
		case Flood:
			chunk := []byte(strings.Repeat("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI flood\n", 1000))
			for {
				n, err := ch.Write(chunk)
				s.mu.Lock()
				s.sent += int64(n)
				s.mu.Unlock()
				if err != nil {
					return
				}
				select {
				case <-s.done:
					return
				default:
				}
			}
		default: // Fake
			n, _ := ch.Write(s.opt.Output)
			s.mu.Lock()
			s.sent += int64(n)
			s.mu.Unlock()
			ch.CloseWrite()
			ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{s.opt.ExitStatus}))
			return
		}
	}
}

// Close stops the server and every connection it holds.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.done:
		s.mu.Unlock()
		return
	default:
		close(s.done)
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
}

func (s *Server) record(a Attempt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts = append(s.attempts, a)
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Address, strconv.Itoa(s.Port)) }

// Attempts returns the attempts recorded so far.
func (s *Server) Attempts() []Attempt {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Attempt(nil), s.attempts...)
}

// Received reports whether any attempt carried secret in clear (a password or answer) or
// offered it as a public key.
func (s *Server) Received(secret string) bool {
	secret = strings.TrimSpace(secret)
	for _, a := range s.Attempts() {
		if a.Secret != "" && (strings.Contains(a.Secret, secret) ||
			(a.Method == "publickey" && sameKeyLine(a.Secret, secret))) {
			return true
		}
	}
	return false
}

// sameKeyLine compares two authorized_keys lines by type and blob.
func sameKeyLine(a, b string) bool {
	fa, fb := strings.Fields(a), strings.Fields(b)
	return len(fa) >= 2 && len(fb) >= 2 && fa[0] == fb[0] && fa[1] == fb[1]
}

// Credentialed reports whether any attempt carried a credential.
func (s *Server) Credentialed() bool {
	for _, a := range s.Attempts() {
		if a.Credential {
			return true
		}
	}
	return false
}

// Connections is the number of TCP connections accepted so far.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// Commands is the number of commands (exec, shell or subsystem requests) started so far.
func (s *Server) Commands() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commands
}

// BytesSent is what the server has written to its clients' sessions so far.
func (s *Server) BytesSent() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}
