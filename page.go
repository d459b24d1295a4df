package kps

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Page is a validated limit/offset pair (kps-v3-api.md §4.1).
type Page struct {
	Limit  int
	Offset int
}

// ParsePage validates the limit and offset query values; present reports whether each was sent.
// Only plain decimal digits are accepted, so "-1", "+5", "1.5" and "" fail.
func ParsePage(limit string, limitSet bool, offset string, offsetSet bool, defaultLimit int) (Page, error) {
	p := Page{Limit: defaultLimit}
	if limitSet {
		n, ok := parseDecimal(limit)
		if !ok || n < 1 || n > 1000 {
			return p, Errorf(ErrLimit, "Invalid limit '%s': it must be an integer from 1 to 1000.", Clip(limit))
		}
		p.Limit = n
	}
	if offsetSet {
		n, ok := parseDecimal(offset)
		if !ok || n > 2147483647 {
			return p, Errorf(ErrOffset, "Invalid offset '%s': it must be an integer from 0 to 2147483647.", Clip(offset))
		}
		p.Offset = n
	}
	return p, nil
}

// parseDecimal accepts 1 to 10 ASCII digits (every list request parses its limit and offset:
// a loop, not a regular expression).
func parseDecimal(s string) (int, bool) {
	if len(s) < 1 || len(s) > 10 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return int(n), err == nil
}

// Clip shortens user input quoted in an error message to 64 characters, marking a cut with
// "…". It counts characters, not bytes, so a message never holds half of one, and it replaces
// bytes that are not UTF-8 with U+FFFD.
func Clip(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if utf8.RuneCountInString(s) > 64 {
		return string([]rune(s)[:64]) + "…"
	}
	return s
}
