package console

import (
	"bytes"
	"strings"
	"testing"

	"github.com/openkps/kps/api/wire"
	"github.com/openkps/kps/client"
)

// TestExtensionPagesRender renders the rotation and drift pages and the bind form for a member
// and a reader, whole and as the htmx live region: a template that cannot execute fails here,
// not in front of a user, and the reader's pages carry no form that writes.
func TestExtensionPagesRender(t *testing.T) {
	rot := client.Rotation{ID: "0f0e0d0c-aaaa", KeyPairName: "new", State: "HALTED",
		Servers: []wire.RotationServer{{ServerID: "web-01", State: "FAILED", ErrorCode: "KPS.6603", ErrorMsg: "refused"}}}
	check := client.DriftCheck{ID: "0a0b0c0d-bbbb", Status: "DONE", Results: []client.DriftResult{{ServerID: "web-01", Checked: true, Drift: true,
		BoundKey: "missing", KeyPairName: "new", Password: "yes", PasswordExpected: "no", FileProblems: []string{"authorized_keys is writable by group"}}}}
	pages := map[string]any{
		"rotations": rotationList{Rotations: []rotationView{viewOf(rot)}},
		"rotation": struct {
			rotationView
			Self string
		}{viewOf(rot), "/console/rotations/x"},
		"rotation-new": rotationForm{bindData: bindData{Selected: map[string]bool{}}},
		"drift":        driftList{Checks: []driftView{driftViewOf(check)}, Servers: []client.Server{{ID: "web-01"}}},
		"drift-check": struct {
			driftView
			Self string
		}{driftViewOf(check), "/console/drift/x"},
		"bind": bindData{Selected: map[string]bool{}, TTL: "8h"},
	}
	for _, role := range []can{{Write: true}, {}} {
		for name, d := range pages {
			for _, tmpl := range []string{"layout", "live"} {
				if templates[name].Lookup(tmpl) == nil {
					continue
				}
				var buf bytes.Buffer
				if err := templates[name].ExecuteTemplate(&buf, tmpl, &page{User: &userView{Can: role, CSRF: "c"}, Data: d}); err != nil {
					t.Errorf("%s (%s, write %v): %v", name, tmpl, role.Write, err)
				}
				html := buf.String()
				writes := strings.Count(html, `method="post"`) - strings.Count(html, `action="/console/logout"`) - strings.Count(html, `action="/console/project"`)
				if !role.Write && writes > 0 {
					t.Errorf("%s shows a reader a form that writes", name)
				}
			}
		}
	}
}
