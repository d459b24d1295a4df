package main

import (
	"bytes"
	"context"
	"testing"
)

// TestUsageExitCode: through the binary's command tree, an invalid `kps serve` setting and an
// unknown command are usage errors (exit code 2).
func TestUsageExitCode(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--token-ttl", "1s"}, console{nil, &out, &errOut, func(string) string { return "" }}); code != 2 {
		t.Fatalf("invalid flag value exited %d: %s", code, errOut.String())
	}
	if code := run(context.Background(), []string{"frobnicate"}, console{nil, &out, &errOut, func(string) string { return "" }}); code != 2 {
		t.Fatalf("unknown command exited %d", code)
	}
}
