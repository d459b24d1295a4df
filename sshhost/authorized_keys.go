package sshhost

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
)

// keyIdentity is what makes two authorized_keys entries the same key (kps-v3-api.md §6.3): the
// key type and the decoded blob. Options and comments do not count.
type keyIdentity struct {
	Type string
	Blob string
}

// authorizedKey is a public key given to the editor: its identity and comment.
type authorizedKey struct {
	id      keyIdentity
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
// options allowed and ignored). It must be a single line.
func parsePublicKey(s string) (authorizedKey, error) {
	b := bytes.TrimRight([]byte(s), " \t\r\n")
	if bytes.ContainsAny(b, "\r\n") {
		return authorizedKey{}, errors.New("public key spans several lines")
	}
	id, rest, ok := parseKeyLine(b)
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

// parseKeyLine classifies one line of authorized_keys (without its newline) the way sshd
// reads it: a key line is a key type token and a base64 blob, optionally after an options
// field. It returns the key's identity and what follows the blob (the comment).
func parseKeyLine(line []byte) (id keyIdentity, rest []byte, ok bool) {
	s := bytes.TrimLeft(line, " \t")
	if len(s) == 0 || s[0] == '#' {
		return keyIdentity{}, nil, false
	}
	if id, rest, ok := parseKey(s); ok {
		return id, rest, true
	}
	// Not a key at the start: skip the options field as sshd does (up to the first space or
	// tab outside double quotes; \" does not end a quoted string) and try once more.
	quoted := false
	i := 0
	for ; i < len(s) && (quoted || (s[i] != ' ' && s[i] != '\t')); i++ {
		if s[i] == '\\' && i+1 < len(s) && s[i+1] == '"' {
			i++
		} else if s[i] == '"' {
			quoted = !quoted
		}
	}
	if i >= len(s) {
		return keyIdentity{}, nil, false
	}
	return parseKey(bytes.TrimLeft(s[i:], " \t"))
}

// parseKey reads "<type> <base64>" at the start of s. The blob must decode and name the same
// type in its first field (the SSH wire encoding of every public key and certificate), which
// is what sshd requires; this recognises key types without a list of them.
func parseKey(s []byte) (id keyIdentity, rest []byte, ok bool) {
	n := bytes.IndexAny(s, " \t")
	if n <= 0 {
		return keyIdentity{}, nil, false
	}
	typ := s[:n]
	s = bytes.TrimLeft(s[n:], " \t")
	n = bytes.IndexAny(s, " \t\r")
	if n < 0 {
		n = len(s)
	}
	encoded, rest := s[:n], s[n:]
	blob, err := base64.StdEncoding.DecodeString(string(encoded))
	if err != nil {
		if blob, err = base64.RawStdEncoding.DecodeString(string(encoded)); err != nil {
			return keyIdentity{}, nil, false
		}
	}
	if len(blob) < 4 {
		return keyIdentity{}, nil, false
	}
	l := binary.BigEndian.Uint32(blob)
	if uint64(l) > uint64(len(blob)-4) || string(blob[4:4+l]) != string(typ) {
		return keyIdentity{}, nil, false
	}
	return keyIdentity{Type: string(typ), Blob: string(blob)}, rest, true
}

// editAuthorizedKeys applies the editing rules of kps-v3-api.md §6.3 to the content of an
// authorized_keys file: every key line whose identity is one of remove goes; install, when
// set, is appended in normalised form as the last line unless a remaining line already has
// its identity. All other lines stay byte for byte and in order; a newline is added to an
// unterminated last line before appending. Should several remaining lines carry the
// installed key, only the first stays, so that the key ends up exactly once.
func editAuthorizedKeys(content []byte, install string, remove []string) ([]byte, error) {
	removed := make(map[keyIdentity]bool, len(remove))
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
		if id, _, ok := parseKeyLine(bytes.TrimSuffix(l, []byte("\n"))); ok {
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
		if id, _, ok := parseKeyLine(bytes.TrimSuffix(l, []byte("\n"))); ok && id == k.id {
			return true
		}
	}
	return false
}
