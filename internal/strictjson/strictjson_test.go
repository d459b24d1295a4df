package strictjson

import (
	"encoding/json"
	"testing"
)

func TestDuplicateKey(t *testing.T) {
	t.Parallel()
	cases := []struct {
		doc, dup string
	}{
		{`{}`, ""},
		{`[]`, ""},
		{`"a"`, ""},
		{`{"a":1,"b":2}`, ""},
		{`{"a":1,"a":2}`, "a"},
		{`{"a":{"b":1},"b":{"a":1}}`, ""},
		{`{"a":{"b":1,"b":2}}`, "b"},
		{`[{"a":1},{"a":1}]`, ""},
		{`[{"a":1,"a":1}]`, "a"},
		{`{"a":[1,{"x":1}],"b":"a","c":{"d":[]},"a":0}`, "a"},
		{`{"a":"b","b":"a"}`, ""},
		{`{"k":{"name":"x"},"k":{"name":"y"}}`, "k"},
		{`{"\u0061":1,"a":2}`, "a"},
		{`{"a":[{"b":[{"c":1,"c":2}]}]}`, "c"},
		{`{"a":null,"b":true,"c":false,"d":1e400,"a":null}`, "a"},
	}
	for _, c := range cases {
		if !json.Valid([]byte(c.doc)) {
			t.Fatalf("invalid test document %s", c.doc)
		}
		got, ok := DuplicateKey([]byte(c.doc))
		if ok != (c.dup != "") || got != c.dup {
			t.Errorf("%s: %q %v, want %q", c.doc, got, ok, c.dup)
		}
	}
}

// FuzzDuplicateKey checks that DuplicateKey never panics on valid JSON and finds no duplicate in
// what encoding/json re-encodes (which cannot hold any).
func FuzzDuplicateKey(f *testing.F) {
	for _, s := range []string{`{"a":1,"a":2}`, `[{"a":1},{"a":1}]`, `{"a":{"b":[1,{"b":2}]}}`, `"x"`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		if !json.Valid(doc) {
			return
		}
		DuplicateKey(doc)
		var v any
		if err := json.Unmarshal(doc, &v); err != nil {
			return // deeper than encoding/json allows
		}
		re, _ := json.Marshal(v)
		if _, again := DuplicateKey(re); again {
			t.Fatalf("duplicate in re-encoded %s", re)
		}
	})
}
