package sshhost

import (
	"context"
	"net"
	"strings"
	"time"

	"github.com/openkps/kps"
)

// Inspection for drift checks (kps-v3-api.md §7.2): one session that reads and changes
// nothing — authorized_keys with its mode and owner, and, where the login user may run it as
// root, what sshd -T says of password login and AuthorizedKeysFile.

const stepInspect = "Reading the host"

// inspectScript prints authorized_keys (as the task script does), its mode and owner, the
// user's UID and ~/.ssh's mode, then the sshd -T keywords a drift check compares, prefixed
// "sshd-", or "sshd-t unavailable". Arguments: user, main sshd_config path, connection spec
// for sshd -T -C.
var inspectScript = prelude + locate + `if [ -e "$ak" ]; then
	[ -r "$ak" ] || fail 6605 authorized-keys-unreadable
	echo "begin authorized_keys"
	od -An -v -tx1 < "$ak" || fail 6605 authorized-keys-unreadable
	echo "end authorized_keys"
	read -r perms _ owner group _ <<EOF
$(ls -ln -- "$ak")
EOF
	echo "mode $perms"
	echo "owner $owner:$group"
else
	echo "absent authorized_keys"
fi
echo "uid $uid"
echo "sshdir $sshperms"
keys() { awk '$1 == "passwordauthentication" || $1 == "kbdinteractiveauthentication" || $1 == "authorizedkeysfile" { print "sshd-" $0 }'; }
myid
t=''
if [ "$me" = 0 ]; then
	t=$(sshd -T -f "$2" -C "$3" 2>/dev/null || sshd -T -f "$2" 2>/dev/null)
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
	t=$(sudo -n sshd -T -f "$2" -C "$3" 2>/dev/null || sudo -n sshd -T -f "$2" 2>/dev/null)
fi
if [ -n "$t" ]; then printf '%s\n' "$t" | keys; else echo "sshd-t unavailable"; fi
echo "done"
`

// Inspect implements kps.HostInspector: it logs in as job.Login, with the host key rules of a
// task (pinned keys, or trust on first use through job.PinHostKey), and reads the host.
func (e *Executor) Inspect(ctx context.Context, job kps.HostJob) (kps.HostInspection, error) {
	t := e.newTask(job, "drift_check", job.TaskID)
	defer t.close()
	start := time.Now()
	var err error
	if t.auth, err = t.authMethods(); err != nil {
		return kps.HostInspection{}, err
	}
	t.timeout = e.connectTimeout()
	if err := t.dial(ctx); err != nil {
		return kps.HostInspection{}, err
	}
	addr := "127.0.0.1"
	if ta, ok := t.local.(*net.TCPAddr); ok {
		addr = ta.IP.String()
	}
	spec := "user=" + job.User + ",host=" + addr + ",addr=" + addr
	out, err := t.run(ctx, stepInspect, inspectScript, []string{job.User, t.sshdConfigPath(), spec}, nil)
	if err != nil {
		t.log.Warn("drift check read failed", "code", kps.ErrorCode(err), "error", err)
		return kps.HostInspection{}, err
	}
	var in kps.HostInspection
	in.AuthorizedKeys, in.AuthorizedKeysExists = out.sections["authorized_keys"]
	in.Mode, in.Owner = out.fields["mode"], out.fields["owner"]
	in.UID, in.SSHDir = out.fields["uid"], out.fields["sshdir"]
	if _, none := out.fields["sshd-t"]; !none {
		in.SSHD = map[string]string{}
		for k, v := range out.fields {
			if name, ok := strings.CutPrefix(k, "sshd-"); ok {
				in.SSHD[name] = v
			}
		}
	}
	t.log.Info("drift check read", "authorized_keys_bytes", len(in.AuthorizedKeys), "sshd_t", in.SSHD != nil, "duration", time.Since(start))
	return in, nil
}

var _ kps.HostInspector = (*Executor)(nil)
