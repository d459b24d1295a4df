package kps

import (
	"strings"
	"testing"
)

// TestRandomStringUniform: every character of the alphabet, and only those, comes out about
// equally often. With 62 characters a plain modulo would make the first eight 25% likelier.
func TestRandomStringUniform(t *testing.T) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	const n = 620_000 // 10,000 per character; a standard deviation of about 100
	s := RandomString(alphabet, n)
	if len(s) != n {
		t.Fatalf("length %d, want %d", len(s), n)
	}
	counts := map[rune]int{}
	for _, c := range s {
		if !strings.ContainsRune(alphabet, c) {
			t.Fatalf("%q is not in the alphabet", c)
		}
		counts[c]++
	}
	for _, c := range alphabet {
		if got := counts[c]; got < 9_500 || got > 10_500 {
			t.Errorf("%q drawn %d times, want about 10,000", c, got)
		}
	}
}
