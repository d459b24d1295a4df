//go:build !linux

package daemon

// scrubInitialEnviron does nothing where no /proc exposes the initial environment block.
func scrubInitialEnviron(string) error { return nil }
