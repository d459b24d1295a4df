package tasklist

import (
	"encoding/json"
	"unicode/utf8"
)

// appendJSONStringBody appends s as the inside of a JSON string exactly as encoding/json
// writes it (Marshal, so with HTML escaping): <, > and & as \u003c, \u003e, \u0026; the short
// escapes \b \f \n \r \t; other control bytes as \u00XX; each invalid UTF-8 byte as U+FFFD
// the way encoding/json writes it (invalidUTF8); U+2028 and U+2029 escaped.
// FuzzAppendJSONString holds it to json.Marshal.
func appendJSONStringBody(b []byte, s []byte) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, invalidUTF8...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(b, s[start:]...)
}

// invalidUTF8 is what encoding/json writes for a byte that is not UTF-8: the escape \ufffd up
// to Go 1.26, the character U+FFFD itself since Go 1.27 (encoding/json on json/v2). Both decode
// to the same string; taking it from encoding/json keeps list pages byte for byte equal to
// json.Marshal's output under either toolchain.
var invalidUTF8 = func() string {
	b, _ := json.Marshal("\xff")
	return string(b[1 : len(b)-1])
}()

// jsonSafe marks the ASCII bytes encoding/json copies as they are (its htmlSafeSet): every
// printable byte and DEL, except ", \\, <, > and &.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()
