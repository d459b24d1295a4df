package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/openkps/kps"
)

func TestReadBodyContentTypeAndSize(t *testing.T) {
	t.Parallel()
	cases := []struct {
		ctype, body, code string
	}{
		{"", `{}`, kps.ErrContentType},
		{"text/plain", `{}`, kps.ErrContentType},
		{"application/jsonx", `{}`, kps.ErrContentType},
		{"Application/JSON; charset=UTF-8", `{}`, ""},
		{"application/json;charset=UTF-8", strings.Repeat(" ", MaxBody) + `{}`, kps.ErrTooLarge},
	}
	for _, c := range cases {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(c.body))
		if c.ctype != "" {
			r.Header.Set("Content-Type", c.ctype)
		}
		_, err := ReadBody(r, MaxBody)
		if c.code == "" && err != nil || c.code != "" && kps.ErrorCode(err) != c.code {
			t.Errorf("%q: got %v, want %s", c.ctype, err, c.code)
		}
	}
}
