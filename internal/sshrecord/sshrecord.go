// Package sshrecord is an in-process SSH server for tests that records every authentication
// attempt a client makes: the method, the user, and whether a credential (a password, a
// public key, keyboard-interactive answers) came with it. It accepts no login unless told to,
// so it shows what a client would have handed to a host it should not trust.
package sshrecord

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

// Attempt is one authentication attempt as the server saw it.
type Attempt struct {
	Method string // "none", "password", "publickey", "keyboard-interactive"
	User   string
	// Credential says the attempt carried a secret or a key: a password, an offered public
	// key (with or without a signature), or answers to keyboard-interactive questions.
	Credential bool
}

// Server is a listening recorder.
type Server struct {
	Address string
	Port    int
	// HostKey is the key the server presents, in authorized_keys form.
	HostKey string

	ln       net.Listener
	mu       sync.Mutex
	attempts []Attempt
	conns    int
	wg       sync.WaitGroup
}

// Start listens on 127.0.0.1 with a fresh ed25519 host key and records until the test ends.
func Start(t testing.TB) *Server {
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
		ln:      ln,
	}
	refuse := errors.New("recorded, refused")
	cfg := &ssh.ServerConfig{
		PasswordCallback: func(c ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
			s.record(Attempt{Method: "password", User: c.User(), Credential: true})
			return nil, refuse
		},
		PublicKeyCallback: func(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			s.record(Attempt{Method: "publickey", User: c.User(), Credential: true})
			return nil, refuse
		},
		KeyboardInteractiveCallback: func(c ssh.ConnMetadata, ask ssh.KeyboardInteractiveChallenge) (*ssh.Permissions, error) {
			answers, err := ask(c.User(), "", []string{"Password: "}, []bool{false})
			s.record(Attempt{Method: "keyboard-interactive", User: c.User(), Credential: err == nil && len(answers) > 0})
			return nil, refuse
		},
		// Every method the client tries, "none" included; the callbacks above mark those
		// that carried a credential.
		AuthLogCallback: func(c ssh.ConnMetadata, method string, err error) {
			if method == "none" {
				s.record(Attempt{Method: method, User: c.User()})
			}
		},
		ServerVersion: "SSH-2.0-OpenSSH_9.2p1 sshrecord",
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
				// The handshake ends in an error: the client gave up or every method was
				// refused. Nothing is served.
				if sc, chans, reqs, err := ssh.NewServerConn(c, cfg); err == nil {
					go ssh.DiscardRequests(reqs)
					for ch := range chans {
						ch.Reject(ssh.Prohibited, "recorder")
					}
					sc.Close()
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
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

// Connections is the number of TCP connections accepted so far.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}
