package sshhost

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkEditAuthorizedKeys is the in-memory edit of a bind (§6.3): install one key and
// remove the one it replaces, in files of 10, 100 and 1,000 keys with comments and options.
//
//	go test -run '^$' -bench EditAuthorizedKeys ./sshhost
func BenchmarkEditAuthorizedKeys(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprint("keys=", n), func(b *testing.B) {
			var sb strings.Builder
			sb.WriteString("# managed by hand\n")
			for i := range n {
				if i%10 == 0 {
					sb.WriteString(`from="10.0.0.0/8",no-pty `)
				}
				sb.WriteString(seedKey(b, byte(i%250+1), fmt.Sprintf("user%d@host", i)))
				sb.WriteByte('\n')
			}
			content := []byte(sb.String())
			install, remove := seedKey(b, 251, "kps"), []string{seedKey(b, 2, "")}
			b.SetBytes(int64(len(content)))
			for b.Loop() {
				out, err := editAuthorizedKeys(content, install, remove)
				if err != nil || len(out) == 0 {
					b.Fatal(err)
				}
			}
		})
	}
}
