package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// osv writes one OSV entry (the fields the index reads, plus one it must carry through
// untouched) to dir and returns its bytes.
func osv(t *testing.T, dir, id, modified string, modules ...string) []byte {
	t.Helper()
	var affected []string
	for _, m := range modules {
		affected = append(affected, `{"package":{"name":"`+m+`","ecosystem":"Go"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.2.3"}]}]}`)
	}
	b := []byte(`{"schema_version":"1.3.1","id":"` + id + `","modified":"` + modified +
		`","summary":"kept as is","affected":[` + strings.Join(affected, ",") + `]}`)
	if err := os.WriteFile(filepath.Join(dir, id+".json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBuild checks the layout govulncheck's `-db file://` reads: index/db.json holds the newest
// modification time, index/modules.json lists each module once with its entries (sorted, an
// entry naming a module twice listed once), and ID/<id>.json is the entry byte for byte.
func TestBuild(t *testing.T) {
	src, out := t.TempDir(), t.TempDir()
	a := osv(t, src, "GO-2026-0002", "2026-03-01T10:00:00Z", "stdlib", "golang.org/x/net", "stdlib")
	b := osv(t, src, "GO-2026-0001", "2026-05-02T11:30:00Z", "golang.org/x/net")
	c := osv(t, src, "GO-2025-0100", "2025-01-01T00:00:00Z", "toolchain")
	if err := build(src, out); err != nil {
		t.Fatal(err)
	}

	var db map[string]time.Time
	readJSON(t, filepath.Join(out, "index", "db.json"), &db)
	if want := time.Date(2026, 5, 2, 11, 30, 0, 0, time.UTC); len(db) != 1 || !db["modified"].Equal(want) {
		t.Errorf("db.json = %v, want modified %v", db, want)
	}

	var mods []struct {
		Path  string `json:"path"`
		Vulns []struct {
			ID       string    `json:"id"`
			Modified time.Time `json:"modified"`
			Fixed    string    `json:"fixed"`
		} `json:"vulns"`
	}
	readJSON(t, filepath.Join(out, "index", "modules.json"), &mods)
	got := map[string][]string{}
	var order []string
	for _, m := range mods {
		order = append(order, m.Path)
		for _, v := range m.Vulns {
			got[m.Path] = append(got[m.Path], v.ID+"@"+v.Modified.Format(time.RFC3339))
			if v.Fixed != "" {
				t.Errorf("%s %s: fixed %q set; the index must leave it out", m.Path, v.ID, v.Fixed)
			}
		}
	}
	if strings.Join(order, " ") != "golang.org/x/net stdlib toolchain" {
		t.Errorf("modules.json lists %v, want golang.org/x/net stdlib toolchain, sorted", order)
	}
	want := map[string][]string{
		"golang.org/x/net": {"GO-2026-0001@2026-05-02T11:30:00Z", "GO-2026-0002@2026-03-01T10:00:00Z"},
		"stdlib":           {"GO-2026-0002@2026-03-01T10:00:00Z"},
		"toolchain":        {"GO-2025-0100@2025-01-01T00:00:00Z"},
	}
	for p, ids := range want {
		if strings.Join(got[p], " ") != strings.Join(ids, " ") {
			t.Errorf("%s: vulns %v, want %v", p, got[p], ids)
		}
	}

	for id, content := range map[string][]byte{"GO-2026-0002": a, "GO-2026-0001": b, "GO-2025-0100": c} {
		on, err := os.ReadFile(filepath.Join(out, "ID", id+".json"))
		if err != nil || !bytes.Equal(on, content) {
			t.Errorf("ID/%s.json = %q, %v; want the entry unchanged", id, on, err)
		}
	}
}

// TestBuildRefuses checks that input the index cannot stand behind stops the build: no entries
// at all (a wrong -osv folder must not give an empty database that finds nothing), an entry
// that is not JSON, and an ID that would write outside ID/.
func TestBuildRefuses(t *testing.T) {
	if err := build(t.TempDir(), t.TempDir()); err == nil || !strings.Contains(err.Error(), "no OSV entries") {
		t.Errorf("empty folder: %v, want an error", err)
	}
	for name, body := range map[string]string{
		"broken.json":  `{"id":`,
		"escape.json":  `{"id":"../GO-2026-0001","modified":"2026-01-01T00:00:00Z"}`,
		"noid.json":    `{"modified":"2026-01-01T00:00:00Z"}`,
		"backsl.json":  `{"id":"GO\\x","modified":"2026-01-01T00:00:00Z"}`,
		"badtime.json": `{"id":"GO-2026-0001","modified":"yesterday"}`,
	} {
		src, out := t.TempDir(), t.TempDir()
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := build(src, out); err == nil {
			t.Errorf("%s: built a database from %s", name, body)
		}
		if _, err := os.Stat(filepath.Join(out, "index", "modules.json")); err == nil {
			t.Errorf("%s: wrote index/modules.json after a refused entry", name)
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
