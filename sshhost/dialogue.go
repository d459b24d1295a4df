package sshhost

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/openkps/kps"
	"golang.org/x/crypto/ssh"
)

// Talking to a host once logged in: a session runs one of the scripts of scripts.go, either to
// its end (run) or as a dialogue (the task script, which prints the state and waits for the
// executor's answer on its stdin). Output is parsed as it arrives, within the bounds of
// output.go.

// run executes a script in a new session with the given arguments and stdin, and returns its
// standard output, parsed as it arrives and within the bounds of output.go (a host that
// sends more has its session closed at once). Failures are mapped to task outcomes with step
// in the message.
func (t *task) run(ctx context.Context, step, script string, args []string, stdin []byte) (*scriptOutput, error) {
	sess, err := t.newSession(ctx, step)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	var stderr limitedBuffer
	stderr.max = 64 << 10
	sess.Stderr = &stderr
	sess.Stdin = bytes.NewReader(stdin)
	start := time.Now()
	stdout, err := sess.StdoutPipe()
	if err == nil {
		err = sess.Start(command(script, args))
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, &lostError{t.ctxError(ctx, lowerFirst(step))}
		}
		return nil, &lostError{t.fail(kps.TaskRemoteFailed, step, "the remote command cannot be started")}
	}
	counted := &countingReader{r: stdout}
	out := newScriptOutput()
	rerr := out.read(bufio.NewReaderSize(counted, 64<<10), "")
	if bad := t.badOutput(step, rerr); bad != nil {
		sess.Close()
		if ctx.Err() != nil {
			return nil, &lostError{t.ctxError(ctx, lowerFirst(step))}
		}
		return nil, bad
	}
	err = sess.Wait()
	if ctx.Err() != nil {
		return nil, &lostError{t.ctxError(ctx, lowerFirst(step))}
	}
	t.log.Debug("remote step", "step", step, "duration", time.Since(start), "stdout_bytes", counted.n)
	if err == nil {
		if out.complete() != nil {
			return nil, t.fail(kps.TaskRemoteFailed, step, "the host's answer cannot be parsed")
		}
		return out, nil
	}
	return nil, t.exitError(step, err, out.other, stderr.String())
}

// countingReader counts what passes through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// newSession opens a session on the task's connection.
func (t *task) newSession(ctx context.Context, step string) (*ssh.Session, error) {
	sess, err := t.client.NewSession()
	if err != nil {
		if ctx.Err() != nil {
			return nil, &lostError{t.ctxError(ctx, lowerFirst(step))}
		}
		return nil, &lostError{t.fail(kps.TaskRemoteFailed, step, "an SSH session cannot be opened")}
	}
	t.sessions++
	return sess, nil
}

// command is the remote command line running script with args as its positional parameters.
// The login shell that sshd runs it with executes /bin/sh in its own process (exec) rather
// than forking one more.
func command(script string, args []string) string {
	cmd := "exec /bin/sh -c " + shellQuote(script) + " kps"
	for _, a := range args {
		cmd += " " + shellQuote(a)
	}
	return cmd
}

// dialogue is the task script's session (taskScript): the executor reads the state the
// script prints, then answers on its stdin.
type dialogue struct {
	t      *task
	ctx    context.Context
	sess   *ssh.Session
	stdin  io.WriteCloser
	stdout *bufio.Reader
	read   *countingReader // under stdout: the output read so far
	stderr limitedBuffer
	out    *scriptOutput // everything the script printed so far, parsed
	start  time.Time
}

// startDialogue starts taskScript with args in a new session.
func (t *task) startDialogue(ctx context.Context, args []string) (*dialogue, error) {
	sess, err := t.newSession(ctx, stepLocate)
	if err != nil {
		return nil, err
	}
	d := &dialogue{t: t, ctx: ctx, sess: sess, start: time.Now(), out: newScriptOutput()}
	d.stderr.max = 64 << 10
	sess.Stderr = &d.stderr
	stdin, err1 := sess.StdinPipe()
	stdout, err2 := sess.StdoutPipe()
	if err = errors.Join(err1, err2); err == nil {
		err = sess.Start(command(taskScript, args))
	}
	if err != nil {
		sess.Close()
		if ctx.Err() != nil {
			return nil, &lostError{t.ctxError(ctx, lowerFirst(stepLocate))}
		}
		return nil, &lostError{t.fail(kps.TaskRemoteFailed, stepLocate, "the remote command cannot be started")}
	}
	d.read = &countingReader{r: stdout}
	d.stdin, d.stdout = stdin, bufio.NewReaderSize(d.read, 64<<10)
	return d, nil
}

// close ends the session; the script, told nothing more, ends without writing.
func (d *dialogue) close() {
	d.stdin.Close()
	d.sess.Close()
}

// until reads the script's output up to the line marker, parsing it into d.out as it
// arrives. When the output ends first, the session's exit status says why; when it passes the
// bounds of output.go, the session is closed at once and the task fails.
func (d *dialogue) until(step, marker string) error {
	err := d.out.read(d.stdout, marker)
	if err == nil {
		d.t.log.Debug("remote step", "step", step, "duration", time.Since(d.start), "stdout_bytes", d.read.n)
		d.start = time.Now()
		return nil
	}
	if bad := d.t.badOutput(step, err); bad != nil {
		d.sess.Close()
		if d.ctx.Err() != nil {
			return &lostError{d.t.ctxError(d.ctx, lowerFirst(step))}
		}
		return bad
	}
	return d.ended(step)
}

// ended waits for the exit status of a script whose output ended before the expected line.
func (d *dialogue) ended(step string) error {
	err := d.sess.Wait()
	d.sess.Close()
	if d.ctx.Err() != nil {
		return &lostError{d.t.ctxError(d.ctx, lowerFirst(step))}
	}
	if err == nil {
		return &lostError{d.t.fail(kps.TaskRemoteFailed, step, "the remote command ended early")}
	}
	return d.t.exitError(step, err, d.out.other, d.stderr.String())
}

// send writes to the script's stdin.
func (d *dialogue) send(step string, b []byte) error {
	if _, err := d.stdin.Write(b); err != nil {
		d.sess.Close()
		if d.ctx.Err() != nil {
			return &lostError{d.t.ctxError(d.ctx, lowerFirst(step))}
		}
		return &lostError{d.t.fail(kps.TaskRemoteFailed, step, "the SSH session ended unexpectedly")}
	}
	return nil
}

// shellQuote quotes s as one POSIX sh word.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// limitedBuffer keeps at most max bytes and remembers that more came.
type limitedBuffer struct {
	bytes.Buffer
	max      int
	overflow bool
}

// Write always reports success: a short write would make the session fail instead of
// reporting the overflow.
func (b *limitedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if b.Len()+n > b.max {
		b.overflow = true
		p = p[:max(0, b.max-b.Len())]
	}
	b.Buffer.Write(p)
	return n, nil
}
