package tasklist

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestAppendJSONStringMatchesEncodingJSON holds the list encoder to encoding/json on the
// strings that it treats specially.
func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `"quoted" \back\slash`, "<script>&amp;</script>", "\x00\x01\x1f\x7f",
		"\b\f\n\r\t", "naïve ☃ 𝄞", "\u2028\u2029", "\xff\xfe bad \xc3", "tail \xe2\x80", strings.Repeat("é", 300)} {
		checkJSONString(t, s)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a<b>&c", "\u2028\x00\"\\", "\xff\xe2\x80\xa8"} {
		f.Add(s)
	}
	f.Fuzz(checkJSONString)
}

func checkJSONString(t *testing.T, s string) {
	want, _ := json.Marshal(s)
	got := append([]byte{'"'}, appendJSONStringBody(nil, []byte(s))...)
	got = append(got, '"')
	if !bytes.Equal(got, want) {
		t.Fatalf("%q: got %s, want %s", s, got, want)
	}
}
