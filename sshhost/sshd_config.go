package sshhost

import (
	"bytes"
	"errors"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// What the service writes into the SSH daemon's configuration (kps-v3-api.md §6.5, §6.6).
const (
	dropInName     = "00-kps-password.conf"
	managedComment = "# Managed by KPS. Removed when the key pair is unbound."
	beginMarker    = "# BEGIN KPS"
	endMarker      = "# END KPS"
	disabledPrefix = "#KPS-disabled: "
	// sshDir is where sshd resolves relative Include paths (SSHDIR of the OpenSSH build).
	sshDir = "/etc/ssh"
)

// passwordKeywords are the global keywords that let users log in with a password.
var passwordKeywords = map[string]bool{
	"passwordauthentication":          true,
	"kbdinteractiveauthentication":    true,
	"challengeresponseauthentication": true,
}

// passwordOffLines are the two settings that turn password login off. OpenSSH before 8.7
// predates the KbdInteractiveAuthentication name for the server.
func passwordOffLines(challengeResponse bool) string {
	kbd := "KbdInteractiveAuthentication no"
	if challengeResponse {
		kbd = "ChallengeResponseAuthentication no"
	}
	return "PasswordAuthentication no\n" + kbd + "\n"
}

// dropInContent is the content of 00-kps-password.conf.
func dropInContent(challengeResponse bool) []byte {
	return []byte(managedComment + "\n" + passwordOffLines(challengeResponse))
}

// disablePlan is how password login gets turned off on one host: a drop-in file in DropInDir,
// or, when no Include of a drop-in directory precedes the global password keywords, a new
// main file content (nil when the main file already carries the KPS block).
type disablePlan struct {
	DropInDir string
	Main      []byte
}

// planDisable decides between the drop-in and the main file edit of §6.5 steps 2 and 3.
func planDisable(main []byte, challengeResponse bool) disablePlan {
	if hasKPSBlock(main) {
		return disablePlan{}
	}
	for _, l := range configLines(main) {
		kw, args := parseConfigLine(l)
		if kw == "match" || passwordKeywords[kw] {
			break
		}
		if kw == "include" {
			for _, a := range args {
				if dir := dropInDir(a); dir != "" {
					return disablePlan{DropInDir: dir}
				}
			}
		}
	}
	var out bytes.Buffer
	out.WriteString(beginMarker + "\n" + managedComment + "\n" + passwordOffLines(challengeResponse) + endMarker + "\n")
	global := true
	for _, l := range configLines(main) {
		kw, _ := parseConfigLine(l)
		if kw == "match" {
			global = false
		}
		if global && passwordKeywords[kw] {
			out.WriteString(disabledPrefix)
		}
		out.Write(l)
	}
	return disablePlan{Main: out.Bytes()}
}

var errDamagedBlock = errors.New("sshd configuration has '# BEGIN KPS' without '# END KPS'")

// restoreMain undoes the main file edit of planDisable: the KPS block goes and lines the
// service commented out come back. changed is false when there was nothing to undo.
func restoreMain(main []byte) (out []byte, changed bool, err error) {
	inBlock := false
	for _, l := range configLines(main) {
		t := strings.TrimSpace(string(l))
		switch {
		case !inBlock && t == beginMarker:
			inBlock, changed = true, true
		case inBlock:
			if t == endMarker {
				inBlock = false
			}
		case bytes.HasPrefix(l, []byte(disabledPrefix)):
			out = append(out, l[len(disabledPrefix):]...)
			changed = true
		default:
			out = append(out, l...)
		}
	}
	if inBlock {
		return nil, false, errDamagedBlock
	}
	if !changed {
		return main, false, nil
	}
	return out, true, nil
}

// dropInDirs lists every directory an Include of main covers with a glob that would pick up
// 00-kps-password.conf: where a drop-in of the service can be.
func dropInDirs(main []byte) []string {
	var dirs []string
	seen := map[string]bool{}
	for _, l := range configLines(main) {
		kw, args := parseConfigLine(l)
		if kw != "include" {
			continue
		}
		for _, a := range args {
			if d := dropInDir(a); d != "" && !seen[d] {
				seen[d] = true
				dirs = append(dirs, d)
			}
		}
	}
	return dirs
}

func hasKPSBlock(main []byte) bool {
	for _, l := range configLines(main) {
		if strings.TrimSpace(string(l)) == beginMarker {
			return true
		}
	}
	return false
}

// dropInDir returns the directory of an Include argument such as
// "/etc/ssh/sshd_config.d/*.conf" when its glob matches 00-kps-password.conf, else "".
func dropInDir(arg string) string {
	if !strings.HasPrefix(arg, "/") {
		arg = sshDir + "/" + arg
	}
	dir, base := path.Split(arg)
	if strings.ContainsAny(dir, "*?[") || !strings.ContainsAny(base, "*?[") {
		return ""
	}
	if ok, err := path.Match(base, dropInName); err != nil || !ok {
		return ""
	}
	return path.Clean(dir)
}

// configLines splits after every newline; the last line may lack one.
func configLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return append(out, b)
		}
		out, b = append(out, b[:i+1]), b[i+1:]
	}
	return out
}

// parseConfigLine splits an sshd_config line into its lower-case keyword and arguments as
// sshd does: "Keyword value", "Keyword=value", double-quoted arguments, and a '#' at the start
// of an unquoted argument begins a comment.
func parseConfigLine(l []byte) (keyword string, args []string) {
	s := strings.TrimLeft(strings.TrimRight(string(l), "\r\n"), " \t")
	if s == "" || s[0] == '#' {
		return "", nil
	}
	end := strings.IndexAny(s, " \t=")
	if end < 0 {
		return strings.ToLower(s), nil
	}
	keyword = strings.ToLower(s[:end])
	s = strings.TrimLeft(s[end:], " \t")
	if strings.HasPrefix(s, "=") {
		s = strings.TrimLeft(s[1:], " \t")
	}
	for s != "" {
		if s[0] == '#' {
			break
		}
		var arg string
		if s[0] == '"' {
			i := strings.IndexByte(s[1:], '"')
			if i < 0 {
				return keyword, append(args, s[1:])
			}
			arg, s = s[1:1+i], s[2+i:]
		} else {
			i := strings.IndexAny(s, " \t")
			if i < 0 {
				i = len(s)
			}
			arg, s = s[:i], s[i:]
		}
		args = append(args, arg)
		s = strings.TrimLeft(s, " \t")
	}
	return keyword, args
}

var openSSHVersion = regexp.MustCompile(`OpenSSH_(\d+)\.(\d+)`)

// needsChallengeResponse reports whether the sshd version output (sshd -V, ssh -V) names an
// OpenSSH older than 8.7, which knows only ChallengeResponseAuthentication. An unknown version
// counts as current.
func needsChallengeResponse(version string) bool {
	m := openSSHVersion.FindStringSubmatch(version)
	if m == nil {
		return false
	}
	major, _ := strconv.Atoi(m[1])
	minor, _ := strconv.Atoi(m[2])
	return major < 8 || (major == 8 && minor < 7)
}
