package kps

import (
	"strconv"
	"testing"
)

// FuzzParsePage checks the limit/offset rules of the list calls (§4.1) on arbitrary query
// values: nothing panics, a refusal is KPS.6005 or KPS.6006, and an accepted page is in range
// and is what the digits say.
func FuzzParsePage(f *testing.F) {
	for _, s := range []struct {
		limit, offset string
		set           uint8
	}{
		{"10", "0", 3}, {"1000", "2147483647", 3}, {"0", "", 1}, {"1001", "", 1},
		{"", "-1", 2}, {"9223372036854775808", "", 1}, {"1e3", "1e3", 3}, {"０", "", 1},
		{" 1", "1 ", 3}, {"+1", "0x10", 3}, {"0001", "00000000001", 3}, {"", "", 0},
	} {
		f.Add(s.limit, s.offset, s.set)
	}
	f.Fuzz(func(t *testing.T, limit, offset string, set uint8) {
		limitSet, offsetSet := set&1 != 0, set&2 != 0
		p, err := ParsePage(limit, limitSet, offset, offsetSet, 1000)
		if err != nil {
			if c := ErrorCode(err); c != ErrLimit && c != ErrOffset {
				t.Fatalf("refusal with code %s: %v", c, err)
			}
			return
		}
		if p.Limit < 1 || p.Limit > 1000 || p.Offset < 0 || p.Offset > 2147483647 {
			t.Fatalf("accepted page out of range: %+v", p)
		}
		if limitSet {
			if n, err := strconv.ParseUint(limit, 10, 64); err != nil || int(n) != p.Limit {
				t.Fatalf("limit %q read as %d", limit, p.Limit)
			}
		} else if p.Limit != 1000 {
			t.Fatalf("default limit %d", p.Limit)
		}
		if offsetSet {
			if n, err := strconv.ParseUint(offset, 10, 64); err != nil || int(n) != p.Offset {
				t.Fatalf("offset %q read as %d", offset, p.Offset)
			}
		} else if p.Offset != 0 {
			t.Fatalf("default offset %d", p.Offset)
		}
	})
}
