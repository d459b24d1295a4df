package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/term"
)

func termIsTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// terminal is the terminal to prompt on: standard input when it is one, else the process's
// controlling terminal (/dev/tty), so that `kps … --ask-auth-password < servers.txt` still
// asks the person at the keyboard. The closer releases /dev/tty.
func (a *app) terminal() (*os.File, func(), error) {
	if f, ok := a.con.Stdin.(*os.File); ok && termIsTerminal(f) {
		return f, func() {}, nil
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, nil, errors.New("there is no terminal to ask on")
	}
	if !termIsTerminal(tty) {
		tty.Close()
		return nil, nil, errors.New("there is no terminal to ask on")
	}
	return tty, func() { tty.Close() }, nil
}

// prompt asks for a secret on the terminal without echo: one line.
func (a *app) prompt(question string) (string, error) {
	tty, done, err := a.terminal()
	if err != nil {
		return "", err
	}
	defer done()
	fmt.Fprint(a.con.Stderr, question)
	b, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(a.con.Stderr)
	if err != nil {
		return "", fmt.Errorf("reading from the terminal: %w", err)
	}
	return string(b), nil
}

// secretLine reads a secret given on standard input (flag names the --…-stdin flag): its first
// line. When standard input is a terminal nothing is piped in, so it asks without echo instead
// of echoing the secret and waiting for Ctrl-D.
func (a *app) secretLine(flag, question string) (string, error) {
	if f, ok := a.con.Stdin.(*os.File); ok && termIsTerminal(f) {
		return a.prompt(question)
	}
	if a.con.Stdin == nil {
		return "", usagef("%s: standard input is closed", flag)
	}
	line, err := bufio.NewReader(io.LimitReader(a.con.Stdin, 64<<10)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("%s: reading standard input: %w", flag, err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", usagef("%s: standard input holds no secret", flag)
	}
	return line, nil
}

// fileError is a file system error in a few words: the operation and path are said by the
// caller, who knows which flag named the file.
func fileError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		err = le.Err
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errors.New("no such file or directory")
	case errors.Is(err, fs.ErrPermission):
		return errors.New("permission denied")
	case errors.Is(err, fs.ErrExist):
		return errors.New("the file exists")
	case errors.Is(err, syscall.ENOTDIR):
		return errors.New("a part of the path is not a directory")
	case errors.Is(err, syscall.EISDIR):
		return errors.New("it is a directory")
	}
	return err
}

// readFlagFile reads a file named by a flag ("-" is standard input); the error names both.
func (a *app) readFlagFile(flag, name string) (string, error) {
	if name == "-" {
		b, err := io.ReadAll(io.LimitReader(a.con.Stdin, 1<<20))
		if err != nil {
			return "", fmt.Errorf("%s -: reading standard input: %w", flag, err)
		}
		return string(b), nil
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", flag, name, fileError(err))
	}
	return string(b), nil
}

// replaceFile writes data to path with mode 0600, never widening an existing file's mode: it
// writes a fresh 0600 file beside it and renames it into place.
func replaceFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// secretFile is a private key file being written for --out: a 0600 file opened in the target
// directory before anything is asked of the service, so that an unwritable place fails first,
// and put in place only when complete. Without force the target must not exist: a private
// key is never overwritten by accident.
type secretFile struct {
	flag, path string
	force      bool
	tmp        *os.File
}

// openSecretFile prepares --out path; it fails when the path exists (without force) or its
// directory cannot take a new file.
func openSecretFile(flag, path string, force bool) (*secretFile, error) {
	if path == "" || path == "-" {
		return nil, usagef("%s needs a file name; standard output is --show", flag)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.IsDir() {
			return nil, usagef("%s %s: it is a directory", flag, path)
		}
		if !force {
			return nil, usagef("%s %s: the file exists; give --force to replace it", flag, path)
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("%s %s: cannot write in %s: %w", flag, path, filepath.Dir(path), fileError(err))
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("%s %s: %w", flag, path, fileError(err))
	}
	return &secretFile{flag: flag, path: path, force: force, tmp: tmp}, nil
}

// write stores data durably in the temporary file.
func (s *secretFile) write(data []byte) error {
	if _, err := s.tmp.Write(data); err != nil {
		return fmt.Errorf("%s %s: writing: %w", s.flag, s.path, fileError(err))
	}
	if err := s.tmp.Sync(); err != nil {
		return fmt.Errorf("%s %s: writing: %w", s.flag, s.path, fileError(err))
	}
	if err := s.tmp.Close(); err != nil {
		return fmt.Errorf("%s %s: writing: %w", s.flag, s.path, fileError(err))
	}
	return nil
}

// commit puts the complete file in place: a rename with --force, else a link, which fails
// if a file appeared at the path meanwhile.
func (s *secretFile) commit() error {
	defer os.Remove(s.tmp.Name())
	var err error
	if s.force {
		err = os.Rename(s.tmp.Name(), s.path)
	} else {
		err = os.Link(s.tmp.Name(), s.path)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", s.flag, s.path, fileError(err))
	}
	return nil
}

// abort removes the temporary file; on nil (no --out) it does nothing.
func (s *secretFile) abort() {
	if s == nil {
		return
	}
	s.tmp.Close()
	os.Remove(s.tmp.Name())
}
