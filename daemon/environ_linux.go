package daemon

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// scrubInitialEnviron overwrites with NUL bytes every name=value entry of the variable in the
// environment block the kernel set up at exec (between env_start and env_end of
// /proc/self/stat), which /proc/<pid>/environ reads. Go copied the block into its own memory at
// start and never reads it again; the C library's environ may still point into it, but not at
// an entry os.Unsetenv has removed, which is the only kind this overwrites. It writes through
// /proc/self/mem, which needs no unsafe pointer arithmetic and fails cleanly where the kernel
// forbids it.
func scrubInitialEnviron(name string) error {
	start, end, err := environBounds()
	if err != nil {
		return err
	}
	mem, err := os.OpenFile("/proc/self/mem", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("scrub the initial environment: %w", err)
	}
	defer mem.Close()
	block := make([]byte, end-start)
	if _, err := mem.ReadAt(block, int64(start)); err != nil {
		return fmt.Errorf("scrub the initial environment: read the block: %w", err)
	}
	prefix := []byte(name + "=")
	for off := 0; off < len(block); {
		n := bytes.IndexByte(block[off:], 0)
		if n < 0 {
			n = len(block) - off
		}
		if bytes.HasPrefix(block[off:off+n], prefix) {
			if _, err := mem.WriteAt(make([]byte, n), int64(start)+int64(off)); err != nil {
				return fmt.Errorf("scrub the initial environment: %w", err)
			}
		}
		off += n + 1
	}
	shown, err := os.ReadFile("/proc/self/environ")
	if err != nil {
		return fmt.Errorf("scrub the initial environment: check: %w", err)
	}
	if bytes.Contains(append([]byte{0}, shown...), append([]byte{0}, prefix...)) {
		return fmt.Errorf("scrub the initial environment: %s is still shown", name)
	}
	return nil
}

// environBounds returns env_start and env_end of /proc/self/stat (fields 50 and 51, Linux 3.5+).
func environBounds() (start, end uint64, err error) {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, 0, fmt.Errorf("scrub the initial environment: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces or ')': fields are
	// counted from the last ')', which ends field 2.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("scrub the initial environment: /proc/self/stat unreadable")
	}
	fields := strings.Fields(string(stat[i+1:])) // fields[0] is field 3
	if len(fields) < 49 {
		return 0, 0, fmt.Errorf("scrub the initial environment: /proc/self/stat has no env_start (kernel before 3.5)")
	}
	if start, err = strconv.ParseUint(fields[47], 10, 64); err == nil {
		end, err = strconv.ParseUint(fields[48], 10, 64)
	}
	if err != nil || end < start || end-start > 16<<20 {
		return 0, 0, fmt.Errorf("scrub the initial environment: env_start %d, env_end %d: %v", start, end, err)
	}
	return start, end, nil
}
