package daemon

import "os"

// forgetSecretEnv removes the variable name from this process's environment once its value has
// been read, so that nothing started later, nor anyone reading the process, finds the secret
// there (docs/SECURITY.md rule 6.7). os.Unsetenv takes it out of os.Environ, out of what child
// processes inherit and, when cgo is linked, out of the C library's environ. It does not touch
// the environment block the kernel set up at exec, which Go only copied and which is what
// /proc/<pid>/environ shows: where the platform allows, scrubInitialEnviron overwrites the
// variable's bytes there (environ_linux.go). An error says the block could not be scrubbed;
// the variable is unset from the rest either way.
func forgetSecretEnv(name string) error {
	if _, ok := os.LookupEnv(name); !ok {
		return nil
	}
	os.Unsetenv(name)
	return scrubInitialEnviron(name)
}
