package strictjson

import (
	"testing"

	"github.com/openkps/kps"
)

// TestIntegerRange checks the edges of int64: 2^63 is out of range even though
// float64(math.MaxInt64) equals it, and duplicate members are refused.
func TestIntegerRange(t *testing.T) {
	t.Parallel()
	cases := []struct {
		body string
		want int64
		ok   bool
	}{
		{`{"n":9223372036854775807}`, 9223372036854775807, true},
		{`{"n":-9223372036854775808}`, -9223372036854775808, true},
		{`{"n":9223372036854775808}`, 0, false},
		{`{"n":9.223372036854775807e18}`, 0, false},
		{`{"n":-9223372036854775809}`, -9223372036854775808, true}, // rounds to -2^63 as a float
		{`{"n":-1e19}`, 0, false},
		{`{"n":1e400}`, 0, false},
		{`{"n":2.0}`, 2, true},
		{`{"n":2.5}`, 0, false},
	}
	for _, c := range cases {
		v, err := Parse([]byte(c.body))
		if err != nil {
			t.Fatal(err)
		}
		root, _ := RootObject(v)
		n, _, err := root.Integer("n")
		if (err == nil) != c.ok || (c.ok && n != c.want) {
			t.Errorf("%s: %d %v", c.body, n, err)
		}
	}
	if _, err := Parse([]byte(`{"a":1,"b":{"c":1,"c":2}}`)); kps.ErrorCode(err) != kps.ErrBadJSON {
		t.Errorf("duplicate member: %v", err)
	}
}
