package hostilessh

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func dial(t *testing.T, s *Server, password string) (*ssh.Client, error) {
	t.Helper()
	return ssh.Dial("tcp", s.Addr(), &ssh.ClientConfig{
		User:            "victim",
		Auth:            []ssh.AuthMethod{ssh.Password(password)},
		HostKeyCallback: ssh.HostKeyCallback(func(string, net.Addr, ssh.PublicKey) error { return nil }),
		Timeout:         5 * time.Second,
	})
}

func TestRefuseRecordsThePassword(t *testing.T) {
	s := Start(t, Options{Behavior: Refuse})
	if _, err := dial(t, s, "s3cret-in-clear"); err == nil {
		t.Fatal("login accepted")
	}
	if !s.Received("s3cret-in-clear") || !s.Credentialed() {
		t.Fatalf("password not recorded: %+v", s.Attempts())
	}
	if s.Received("something-else") {
		t.Fatal("Received matches a secret never sent")
	}
}

func TestFakeAnswersEveryCommand(t *testing.T) {
	s := Start(t, Options{Behavior: Fake, Output: []byte("hello\n"), ExitStatus: 3})
	c, err := dial(t, s, "x")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sess, _ := c.NewSession()
	out, err := sess.Output("anything")
	var exit *ssh.ExitError
	if string(out) != "hello\n" || !asExit(err, &exit) || exit.ExitStatus() != 3 {
		t.Fatalf("output %q err %v", out, err)
	}
}

func TestFloodPrintsWithoutEnd(t *testing.T) {
	s := Start(t, Options{Behavior: Flood})
	c, err := dial(t, s, "x")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sess, _ := c.NewSession()
	r, _ := sess.StdoutPipe()
	if err := sess.Start("cat"); err != nil {
		t.Fatal(err)
	}
	n, err := io.CopyN(io.Discard, r, 8<<20)
	if n != 8<<20 || err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
}

func TestStallNeverAnswers(t *testing.T) {
	s := Start(t, Options{Behavior: Stall})
	c, err := dial(t, s, "x")
	if err != nil {
		t.Fatal(err)
	}
	sess, _ := c.NewSession()
	var out bytes.Buffer
	sess.Stdout = &out
	done := make(chan error, 1)
	go func() { done <- sess.Run("echo hi") }()
	select {
	case err := <-done:
		t.Fatalf("command ended: %v %q", err, out.String())
	case <-time.After(500 * time.Millisecond):
	}
	if s.Commands() != 1 {
		t.Fatalf("commands %d", s.Commands())
	}
	c.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("closing the client did not end the command")
	}
}

func asExit(err error, target **ssh.ExitError) bool { return errors.As(err, target) }
