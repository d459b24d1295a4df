package kps

import "crypto/rand"

// RandomString returns n characters drawn uniformly from alphabet (at most 256 characters)
// with the system's CSPRNG: bytes at or above the largest multiple of len(alphabet) are
// rejected, so no character is likelier than another. Access key IDs, secret keys and
// generated passwords are drawn with it (auth.md §3.1).
func RandomString(alphabet string, n int) string {
	limit := 256 - 256%len(alphabet)
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		rand.Read(buf[:])
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out)
}
