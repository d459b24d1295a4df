//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package store

import (
	"errors"
	"os"
	"syscall"
)

// errLocked reports that another process (or another DB in this one) holds the lock.
var errLocked = errors.New("locked")

// lockFile takes an exclusive, non-blocking flock on path, creating it if needed. flock locks
// belong to the open file description, so a second lockFile in the same process fails too; the
// kernel drops the lock when the process dies, so a crash never leaves a stale lock behind. The
// file itself is left in place on release: removing it would let two openers lock two different
// inodes.
func lockFile(path string) (release func() error, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, err
	}
	return f.Close, nil // closing the file releases the lock
}
