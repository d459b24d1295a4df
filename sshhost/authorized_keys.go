package sshhost

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/openkps/kps/sshkey"
)

// authorizedKey is a public key given to the editor: its identity and comment.
type authorizedKey struct {
	id      sshkey.Identity
	comment string
}

// line is the normalised form written for an installed key: "<type> <base64> <comment>".
func (k authorizedKey) line() string {
	s := k.id.Type + " " + base64.StdEncoding.EncodeToString([]byte(k.id.Blob))
	if k.comment != "" {
		s += " " + k.comment
	}
	return s
}

// parsePublicKey parses a public key as the service stores it ("<type> <base64> [comment]",
// options allowed and ignored). It must be a single line. Its identity is what sshkey.ParseLine
// finds, so that a key given to the editor and a line of the file compare alike.
func parsePublicKey(s string) (authorizedKey, error) {
	b := bytes.TrimRight([]byte(s), " \t\r\n")
	if bytes.ContainsAny(b, "\r\n") {
		return authorizedKey{}, errors.New("public key spans several lines")
	}
	id, rest, ok := sshkey.ParseLine(b)
	if !ok {
		return authorizedKey{}, errors.New("public key not in authorized_keys format")
	}
	comment := bytes.Trim(rest, " \t")
	for _, c := range comment {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return authorizedKey{}, errors.New("public key comment has control characters")
		}
	}
	return authorizedKey{id: id, comment: string(comment)}, nil
}

// editAuthorizedKeys applies the editing rules of kps-v3-api.md §6.3 to the content of an
// authorized_keys file: every key line whose identity is one of remove goes; install, when
// set, is appended in normalised form as the last line unless a remaining line already has
// its identity. All other lines stay byte for byte and in order; a newline is added to an
// unterminated last line before appending. Should several remaining lines carry the
// installed key, only the first stays, so that the key ends up exactly once.
func editAuthorizedKeys(content []byte, install string, remove []string) ([]byte, error) {
	removed := make(map[sshkey.Identity]bool, len(remove))
	for _, r := range remove {
		k, err := parsePublicKey(r)
		if err != nil {
			return nil, fmt.Errorf("key to remove: %w", err)
		}
		removed[k.id] = true
	}
	var want *authorizedKey
	if install != "" {
		k, err := parsePublicKey(install)
		if err != nil {
			return nil, fmt.Errorf("key to install: %w", err)
		}
		want = &k
	}

	out := make([]byte, 0, len(content)+256)
	present := false
	for rest := content; len(rest) > 0; {
		var l []byte
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			l, rest = rest[:i+1], rest[i+1:]
		} else {
			l, rest = rest, nil
		}
		if id, _, ok := sshkey.ParseLine(bytes.TrimSuffix(l, []byte("\n"))); ok {
			if removed[id] {
				continue
			}
			if want != nil && id == want.id {
				if present {
					continue
				}
				present = true
			}
		}
		out = append(out, l...)
	}
	if want != nil && !present {
		if len(out) > 0 && out[len(out)-1] != '\n' {
			out = append(out, '\n')
		}
		out = append(out, want.line()...)
		out = append(out, '\n')
	}
	return out, nil
}

// holdsKey reports whether content has a key line with the identity of key (a public key as
// the service stores it); false when key cannot be parsed.
func holdsKey(content []byte, key string) bool {
	k, err := parsePublicKey(key)
	if err != nil {
		return false
	}
	for l := range bytes.Lines(content) {
		if id, _, ok := sshkey.ParseLine(bytes.TrimSuffix(l, []byte("\n"))); ok && id == k.id {
			return true
		}
	}
	return false
}
