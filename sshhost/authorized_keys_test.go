package sshhost

import (
	"bytes"
	"crypto/ed25519"
	"strings"
	"testing"

	"github.com/openkps/kps/sshkey"
	"golang.org/x/crypto/ssh"
)

// seedKey returns the public key line of a deterministic ed25519 key, so that fuzz seeds
// written to testdata refer to the same keys on every run.
func seedKey(t testing.TB, seed byte, comment string) string {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if comment != "" {
		line += " " + comment
	}
	return line
}

// blob64 is the base64 field of a key line.
func blob64(key string) string { return strings.Fields(key)[1] }

func TestEditAuthorizedKeys(t *testing.T) {
	a := seedKey(t, 1, "new@kps")
	b := seedKey(t, 2, "old@kps")
	c := seedKey(t, 3, "other@example")
	aBare := seedKey(t, 1, "")

	tests := []struct {
		name    string
		in      string
		install string
		remove  []string
		want    string
	}{
		{"empty file", "", a, nil, a + "\n"},
		{
			"unrelated lines kept byte for byte, unterminated last line",
			"# comment\n\n" + `command="echo hi",no-pty ` + c + "\r\n  garbage\tline \n" + c,
			a, nil,
			"# comment\n\n" + `command="echo hi",no-pty ` + c + "\r\n  garbage\tline \n" + c + "\n" + a + "\n",
		},
		{"already present with other options and comment", "from=\"10.*\" " + aBare + " mine\n" + c, a, nil, "from=\"10.*\" " + aBare + " mine\n" + c},
		{"replace removes the old key everywhere", b + "\n" + c + "\nno-pty " + b + " x\n", a, []string{b}, c + "\n" + a + "\n"},
		{"rebind with the same key is a no-op", c + "\n" + a + "\n", a, []string{a}, c + "\n" + a + "\n"},
		{"rebind moves the key to the end and normalises it", "no-pty " + a + "\n" + c + "\n", a, []string{a}, c + "\n" + a + "\n"},
		{"unbind removes exactly the key", c + "\n" + a + "\r\n# keep\n" + a, "", []string{a}, c + "\n# keep\n"},
		{"unbind of an absent key changes nothing", c + "\n# x", "", []string{a}, c + "\n# x"},
		{"duplicates of the installed key are dropped", a + "\n" + c + "\n" + a + "\n", a, nil, a + "\n" + c + "\n"},
		{
			"a key quoted inside options is not the line's key",
			`command="` + a + `" ` + c + "\n",
			"", []string{a},
			`command="` + a + `" ` + c + "\n",
		},
		{"install normalises options away", c + "\n", `no-pty,command="x" ` + a, nil, c + "\n" + a + "\n"},
		{"blob with the wrong type is not a key", "ssh-rsa " + blob64(a) + "\n", a, []string{a}, "ssh-rsa " + blob64(a) + "\n" + a + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := editAuthorizedKeys([]byte(tt.in), tt.install, tt.remove)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
			again, err := editAuthorizedKeys(got, tt.install, tt.remove)
			if err != nil || !bytes.Equal(again, got) {
				t.Errorf("second edit changed the content: %q", again)
			}
		})
	}
}

func TestEditAuthorizedKeysRejectsBadKeys(t *testing.T) {
	a := seedKey(t, 1, "")
	for _, tt := range []struct{ install, remove string }{
		{"not a key", ""},
		{a + "\n" + a, ""},
		{a + " comment\x1b[31m", ""},
		{a, "ssh-ed25519 AAAA"},
	} {
		var remove []string
		if tt.remove != "" {
			remove = []string{tt.remove}
		}
		if _, err := editAuthorizedKeys(nil, tt.install, remove); err == nil {
			t.Errorf("editAuthorizedKeys(install %q, remove %q) succeeded", tt.install, tt.remove)
		}
	}
}

// FuzzEdit checks the editing rules on arbitrary file content: lines unrelated to the keys in
// play survive byte for byte and in order, the installed key ends up exactly once (bind) or a
// removed key not at all (unbind), the edit is idempotent and nothing panics. sel chooses the
// operation: bits 0–1 the key to install (0: none), bits 2–4 the keys to remove.
func FuzzEdit(f *testing.F) {
	keys := []string{seedKey(f, 1, "one@kps"), seedKey(f, 2, "two@kps"), seedKey(f, 3, "three")}
	for _, seed := range []struct {
		content string
		sel     uint8
	}{
		{"", 1},
		{keys[0] + "\n", 1 | 1<<2},
		{"# c\n" + keys[1] + "\n" + `command="echo hi",no-pty ` + keys[0], 1 | 2<<2},
		{keys[2] + "\r\n\n  " + keys[0] + " dup\n" + keys[0], 0 | 1<<2},
		{`from="a b" ` + keys[1] + "\nssh-ed25519 AAAA\n#x", 3 | 7<<2},
	} {
		f.Add([]byte(seed.content), seed.sel)
	}
	f.Fuzz(func(t *testing.T, content []byte, sel uint8) {
		install := ""
		if i := int(sel & 3); i > 0 {
			install = keys[i-1]
		}
		var remove []string
		for i := range keys {
			if sel&(1<<(2+i)) != 0 {
				remove = append(remove, keys[i])
			}
		}
		out, err := editAuthorizedKeys(content, install, remove)
		if err != nil {
			t.Fatal(err)
		}

		ids := func(ks []string) map[sshkey.Identity]bool {
			m := map[sshkey.Identity]bool{}
			for _, k := range ks {
				p, err := parsePublicKey(k)
				if err != nil {
					t.Fatal(err)
				}
				m[p.id] = true
			}
			return m
		}
		managed := ids(remove)
		var installID sshkey.Identity
		if install != "" {
			installID, _ = parseKeyLineString(install)
			managed[installID] = true
		}

		// Walk the input: every line either comes next in the output (an unterminated last
		// line may gain its newline) or was dropped, and only lines of managed keys drop.
		in := splitLines(content)
		rest := out
		for i, l := range in {
			if bytes.HasPrefix(rest, l) {
				r := rest[len(l):]
				if l[len(l)-1] == '\n' || len(r) == 0 {
					rest = r
					continue
				}
				if r[0] == '\n' {
					rest = r[1:]
					continue
				}
			}
			id, ok := parseKeyLineString(strings.TrimSuffix(string(l), "\n"))
			if !ok || !managed[id] {
				t.Fatalf("line %d %q was dropped or changed; output %q", i, l, out)
			}
		}
		if install != "" && len(rest) > 0 && string(rest) != mustLine(t, install)+"\n" {
			t.Fatalf("output ends with %q, want nothing or the installed key", rest)
		}
		if install == "" && len(rest) > 0 {
			t.Fatalf("unbind appended %q", rest)
		}

		count := map[sshkey.Identity]int{}
		for _, l := range splitLines(out) {
			if id, ok := parseKeyLineString(strings.TrimSuffix(string(l), "\n")); ok {
				count[id]++
			}
		}
		for id := range ids(remove) {
			if id != installID && count[id] != 0 {
				t.Fatalf("removed key still present %d times in %q", count[id], out)
			}
		}
		if install != "" && count[installID] != 1 {
			t.Fatalf("installed key present %d times in %q", count[installID], out)
		}

		again, err := editAuthorizedKeys(out, install, remove)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("edit is not idempotent: %q then %q", out, again)
		}
	})
}

func parseKeyLineString(s string) (sshkey.Identity, bool) {
	id, _, ok := sshkey.ParseLine([]byte(s))
	return id, ok
}

func mustLine(t *testing.T, key string) string {
	k, err := parsePublicKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return k.line()
}

// splitLines splits after every newline; the last line may lack one.
func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return append(out, b)
		}
		out, b = append(out, b[:i+1]), b[i+1:]
	}
	return out
}
