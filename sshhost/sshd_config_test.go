package sshhost

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseConfigLine(t *testing.T) {
	tests := []struct {
		line string
		kw   string
		args []string
	}{
		{"PasswordAuthentication yes\n", "passwordauthentication", []string{"yes"}},
		{"  passwordauthentication=no\r\n", "passwordauthentication", []string{"no"}},
		{"PasswordAuthentication = no # trailing", "passwordauthentication", []string{"no"}},
		{`Include "/etc/ssh/with space/*.conf" other.conf`, "include", []string{"/etc/ssh/with space/*.conf", "other.conf"}},
		{"\tMatch User bob", "match", []string{"User", "bob"}},
		{"# PasswordAuthentication no", "", nil},
		{"", "", nil},
		{"UsePAM", "usepam", nil},
	}
	for _, tt := range tests {
		kw, args := parseConfigLine([]byte(tt.line))
		if kw != tt.kw || !reflect.DeepEqual(args, tt.args) {
			t.Errorf("parseConfigLine(%q) = %q %q, want %q %q", tt.line, kw, args, tt.kw, tt.args)
		}
	}
}

func TestDropInDir(t *testing.T) {
	tests := map[string]string{
		"/etc/ssh/sshd_config.d/*.conf": "/etc/ssh/sshd_config.d",
		"sshd_config.d/*.conf":          "/etc/ssh/sshd_config.d", // relative to /etc/ssh, as sshd does
		"/etc/ssh/conf.d/*":             "/etc/ssh/conf.d",
		"/etc/ssh/conf.d/0*.conf":       "/etc/ssh/conf.d",
		"/etc/ssh/conf.d/50-*.conf":     "", // would not pick up 00-kps-password.conf
		"/etc/ssh/conf.d/site.conf":     "", // a single file is not a drop-in directory
		"/etc/ssh/*/x.conf":             "",
		"/etc/ssh/conf.d/*.cfg":         "",
	}
	for arg, want := range tests {
		if got := dropInDir(arg); got != want {
			t.Errorf("dropInDir(%q) = %q, want %q", arg, got, want)
		}
	}
}

func TestPlanDisable(t *testing.T) {
	debian := "Include /etc/ssh/sshd_config.d/*.conf\n\nKbdInteractiveAuthentication no\nUsePAM yes\nPasswordAuthentication yes\n"
	if p := planDisable([]byte(debian), false); p.DropInDir != "/etc/ssh/sshd_config.d" || p.Main != nil {
		t.Errorf("Debian layout: %+v, want the drop-in", p)
	}

	// A keyword before the Include wins over any drop-in: edit the main file.
	main := "# top\nPasswordAuthentication yes\nInclude /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication=yes\nMatch User bob\n  PasswordAuthentication yes\n"
	p := planDisable([]byte(main), false)
	want := "# BEGIN KPS\n" + managedComment + "\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n# END KPS\n" +
		"# top\n#KPS-disabled: PasswordAuthentication yes\nInclude /etc/ssh/sshd_config.d/*.conf\n#KPS-disabled: KbdInteractiveAuthentication=yes\nMatch User bob\n  PasswordAuthentication yes\n"
	if p.DropInDir != "" || string(p.Main) != want {
		t.Errorf("main edit:\n%s\nwant\n%s", p.Main, want)
	}

	// An Include inside a Match block does not count; no Include at all means the main file.
	for _, cfg := range []string{"Match all\nInclude /etc/ssh/sshd_config.d/*.conf\n", "Port 22", ""} {
		if p := planDisable([]byte(cfg), true); p.Main == nil || !strings.Contains(string(p.Main), "ChallengeResponseAuthentication no\n") {
			t.Errorf("planDisable(%q) = %+v, want a main edit with ChallengeResponseAuthentication", cfg, p)
		}
	}

	// Disabling twice keeps the file as it is.
	if p2 := planDisable(p.Main, false); p2.Main != nil || p2.DropInDir != "" {
		t.Errorf("second plan = %+v, want nothing to change", p2)
	}
}

func TestRestoreMainUndoesTheEdit(t *testing.T) {
	for _, orig := range []string{
		"# top\nPasswordAuthentication yes\nInclude /x/*.conf\nKbdInteractiveAuthentication yes\nMatch User bob\n  PasswordAuthentication yes\n",
		"Port 22",
		"",
		"ChallengeResponseAuthentication no\r\nPasswordAuthentication yes",
	} {
		edited := planDisable([]byte(orig), false).Main
		got, changed, err := restoreMain(edited)
		if err != nil || !changed || string(got) != orig {
			t.Errorf("restoreMain(planDisable(%q)) = %q, %v, %v", orig, got, changed, err)
		}
		if again, changed, _ := restoreMain([]byte(orig)); changed || string(again) != orig {
			t.Errorf("restoreMain of an untouched file changed it: %q", again)
		}
	}
	if _, _, err := restoreMain([]byte("# BEGIN KPS\nPasswordAuthentication no\n")); err == nil {
		t.Error("a block without its end was accepted")
	}
}

func TestDropInDirs(t *testing.T) {
	cfg := "Include /a/*.conf\nInclude /a/*.conf b/*\nMatch all\n Include /c/x.conf\n"
	if got, want := dropInDirs([]byte(cfg)), []string{"/a", "/etc/ssh/b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("dropInDirs = %q, want %q", got, want)
	}
}

func TestNeedsChallengeResponse(t *testing.T) {
	tests := map[string]bool{
		"OpenSSH_9.2":                        false,
		"OpenSSH_8.7p1":                      false,
		"OpenSSH_8.6":                        true,
		"OpenSSH_7.4p1, OpenSSL 1.0.2k-fips": true,
		"OpenSSH_10.0":                       false,
		"":                                   false,
	}
	for v, want := range tests {
		if got := needsChallengeResponse(v); got != want {
			t.Errorf("needsChallengeResponse(%q) = %v", v, got)
		}
	}
}

func TestParseOutput(t *testing.T) {
	out := "begin authorized_keys\n 23 20 78 0a\n 00 ff\nend authorized_keys\nabsent other\nstat sshd_config -rw-r----- 1 0 4 3223 Nov 27 /etc/ssh/sshd_config\nversion OpenSSH_9.2\ndone\n"
	sections, fields, err := parseOutput([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if got := sections["authorized_keys"]; string(got) != "# x\n\x00\xff" {
		t.Errorf("authorized_keys = %q", got)
	}
	if _, ok := sections["other"]; ok {
		t.Error("an absent section is present")
	}
	if fields["version"] != "OpenSSH_9.2" {
		t.Errorf("fields = %q", fields)
	}
	mode, owner, ok := parseLS(fields["stat"])
	if !ok || mode != "640" || owner != "0:4" {
		t.Errorf("parseLS = %q %q %v", mode, owner, ok)
	}
	if _, _, err := parseOutput([]byte("begin authorized_keys\n 00\n")); err == nil {
		t.Error("an unterminated section was accepted")
	}
	if _, _, err := parseOutput([]byte("begin sshd_config\n 0g\nend sshd_config\n")); err == nil {
		t.Error("bad hex was accepted")
	}
	if _, _, err := parseOutput([]byte("begin authorized_keys\n 0\nend authorized_keys\n")); err == nil {
		t.Error("an odd number of hex digits was accepted")
	}
}

func TestFailureLine(t *testing.T) {
	for out, want := range map[string]string{
		"begin x\nkps-fail 6605 ssh-dir-symlink\n": "6605 ssh-dir-symlink",
		"kps-fail retry changed\n":                 "retry changed",
		"kps-fail 66a5 x\n":                        "",
		"kps-fail 6605\n":                          "",
		"nothing\n":                                "",
	} {
		code, reason, ok := failure([]byte(out))
		got := ""
		if ok {
			got = code + " " + reason
		}
		if got != want {
			t.Errorf("failure(%q) = %q, want %q", out, got, want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":           "''",
		"plain":      "'plain'",
		"it's":       `'it'\''s'`,
		"$(rm -rf)`": "'$(rm -rf)`'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
