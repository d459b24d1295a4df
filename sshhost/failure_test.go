package sshhost

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestClipKeepsTheEndAndValidUTF8: what a host printed is clipped to its end for the log,
// never in the middle of a character (the helper it replaced cut "é" in half).
func TestClipKeepsTheEndAndValidUTF8(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"0123456789", 4, "6789"},
		{"ab" + strings.Repeat("é", 3), 5, "éé"}, // 6 bytes of é: the cut lands inside the first
		{"x\xffy", 10, "x\uFFFDy"},
		{"", 3, ""},
	} {
		got := clip(c.in, c.n)
		if got != c.want || !utf8.ValidString(got) || len(got) > max(c.n, len(c.want)) {
			t.Errorf("clip(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}
