package sshkey

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
)

// Identity is what makes two keys the same key (kps-v3-api.md §6.3): the key type and the
// decoded blob. Options and comments do not count. It is comparable, so it can key a map.
type Identity struct {
	Type string
	Blob string
}

// Identity is k's identity.
func (k *PublicKey) Identity() Identity { return Identity{Type: k.Type, Blob: string(k.Blob)} }

// ParseLine classifies one line of an authorized_keys file (without its newline) the way sshd
// reads it: a key line is a key type token and a base64 blob, optionally after an options
// field. It returns the key's identity and what follows the blob (the comment, with the
// blanks before it). Unlike ParsePublicKey it knows no list of types and no size rules: a
// host's file may hold any key sshd accepts, certificates included, and every one of them
// must be recognised to be kept or removed by identity.
func ParseLine(line []byte) (id Identity, rest []byte, ok bool) {
	s := bytes.TrimLeft(line, " \t")
	if len(s) == 0 || s[0] == '#' {
		return Identity{}, nil, false
	}
	if id, rest, ok := parseKeyAt(s); ok {
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
		return Identity{}, nil, false
	}
	return parseKeyAt(bytes.TrimLeft(s[i:], " \t"))
}

// parseKeyAt reads "<type> <base64>" at the start of s. The blob must decode and name the
// same type in its first field (the SSH wire encoding of every public key and certificate),
// which is what sshd requires; this recognises key types without a list of them.
func parseKeyAt(s []byte) (id Identity, rest []byte, ok bool) {
	n := bytes.IndexAny(s, " \t")
	if n <= 0 {
		return Identity{}, nil, false
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
			return Identity{}, nil, false
		}
	}
	if len(blob) < 4 {
		return Identity{}, nil, false
	}
	l := binary.BigEndian.Uint32(blob)
	if uint64(l) > uint64(len(blob)-4) || string(blob[4:4+l]) != string(typ) {
		return Identity{}, nil, false
	}
	return Identity{Type: string(typ), Blob: string(blob)}, rest, true
}

// LineIdentity is the identity of the key in one authorized_keys-style line (options
// allowed), and whether the line holds a key at all.
func LineIdentity(line string) (Identity, bool) {
	id, _, ok := ParseLine(bytes.TrimRight([]byte(line), "\r\n"))
	return id, ok
}

// SameKeyLine reports whether two authorized_keys-style lines hold the same key, whatever
// their options and comments; false when either holds no key.
func SameKeyLine(a, b string) bool {
	ia, ok1 := LineIdentity(a)
	ib, ok2 := LineIdentity(b)
	return ok1 && ok2 && ia == ib
}
