package sshhost

import "strings"

// The remote side of a task is POSIX sh scripts, each run in one SSH session: the task script
// reads the state and writes authorized_keys in one dialogue with the executor, the verify
// script settles a write whose connection was lost, the config script changes the daemon
// configuration. Arguments are passed as positional parameters and file contents on stdin,
// so nothing from a request or from the host is ever interpolated into shell code. A script
// reports a failure it recognises as a last line "kps-fail <code> <reason>" with exit status
// 3; any other non-zero exit is an unexpected remote failure (KPS.6610). The scripts use
// shell builtins where POSIX sh has them: every external command is a process on the host.

// prelude sets the environment of §6.1 step 5 and the failure convention.
const prelude = `LC_ALL=C; export LC_ALL
umask 077
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"; export PATH
fail() { printf 'kps-fail %s %s\n' "$1" "$2"; exit 3; }
`

// locate finds the login user's home and checks it, ~/.ssh and authorized_keys (§6.2, §6.4
// steps 1–2). It sets uid, gid, home, ssh, ak, sshowner and sshperms ("" when ~/.ssh does not
// exist), and defines myid, which sets me to our UID (only needed when ~/.ssh is not the
// user's or must be created). $1 is the login user.
const locate = `user=$1 me=''
myid() { [ -n "$me" ] || me=$(id -u) || fail 6610 no-id; }
if command -v getent >/dev/null 2>&1; then
	ent=$(getent passwd "$user") || fail 6608 no-user
else
	ent=$(awk -F: -v u="$user" '$1 == u { print; exit }' /etc/passwd)
fi
[ -n "$ent" ] || fail 6608 no-user
# shellcheck disable=SC2034 # gid is used by the write
IFS=: read -r _ _ uid gid _ home _ <<EOF
$ent
EOF
case $home in /*) ;; *) fail 6608 no-home ;; esac
[ -d "$home" ] || fail 6608 no-home
ssh=$home/.ssh
ak=$ssh/authorized_keys
sshowner='' sshperms=''
# One ls for the home directory and ~/.ssh; a prefix sorts first, so home is the first line.
if [ -d "$ssh" ] && [ ! -L "$ssh" ]; then
	# shellcheck disable=SC2034 # sshperms is used by the write
	{ read -r perms _; read -r sshperms _ sshowner _; } <<EOF
$(ls -ldLn -- "$home" "$ssh")
EOF
else
	read -r perms _ <<EOF
$(ls -ldL -- "$home")
EOF
fi
# OpenSSH's StrictModes ignores keys under a group- or world-writable home.
case $perms in ?????w*|????????w*) fail 6605 home-writable ;; esac
if [ -L "$ssh" ]; then fail 6605 ssh-dir-symlink; fi
if [ -e "$ssh" ]; then
	[ -d "$ssh" ] || fail 6605 ssh-dir-not-directory
	[ -n "$sshowner" ] || fail 6605 ssh-dir-not-directory
	if [ "$sshowner" != "$uid" ]; then
		myid
		[ "$me" = 0 ] || fail 6605 ssh-dir-owner
	fi
fi
if [ -L "$ak" ]; then fail 6605 authorized-keys-symlink; fi
if [ -e "$ak" ] && [ ! -f "$ak" ]; then fail 6605 authorized-keys-not-file; fi
`

// sums sets s1 (and s2) to the SHA-256 of the one or two files named, with sha256sum or
// openssl, in one process; it fails when a file cannot be read or neither tool exists.
const sums = `sums() {
	s1='' s2=''
	if command -v sha256sum >/dev/null 2>&1; then
		out=$(sha256sum "$@" 2>/dev/null) || return 1
	elif command -v openssl >/dev/null 2>&1; then
		out=$(openssl dgst -sha256 "$@" 2>/dev/null) || return 1
	else
		return 1
	fi
	while IFS= read -r l; do
		case $l in
		*'= '*) h=${l##*= } ;;
		*) h=${l%% *} ;;
		esac
		h=${h#\\}
		if [ -z "$s1" ]; then s1=$h; else s2=$h; fi
	done <<EOF
$out
EOF
}
`

// asRoot runs the script in $s with the positional parameters as root, directly or through
// password-less sudo.
const asRoot = `myid
if [ "$me" = 0 ]; then
	/bin/sh -c "$s" kps "$@"
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
	sudo -n /bin/sh -c "$s" kps "$@"
else
	fail 6607 no-privileges
fi`

// taskScript is the one session of a task (§6.2–6.4). It prints authorized_keys (as od hex,
// which survives any content) and, when the task changes the daemon configuration, checks
// privileges first and prints the main sshd_config and the OpenSSH version; then "ready".
// Arguments: user, "priv" or "-", main sshd_config path, privReadScript.
//
// The executor edits the content and answers on stdin, either with end of input (nothing to
// write: the script ends) or with a line "write <size> <sha256 of the new content> <sha256 of
// the content read, or absent> <random suffix>" followed by the new content. The script
// writes that to ~/.ssh/.authorized_keys.kps-<suffix> (created exclusively; mode 0600 and
// the user as owner checked; flushed) and prints "staged". Only after reading "staged" does the executor send the line
// "commit"; the script then renames the staged file over authorized_keys unless either
// file's digest is not the expected one (a cut stdin, or someone else changed the file since
// it was read: "kps-fail retry changed"), reads it back (the renamed inode keeps the mode and
// owner checked before) and prints "done". Without "commit" (end of input: the connection was lost) the staged file is
// removed and nothing is renamed.
//
// So the rename only happens once the staged file exists and the executor has seen it.
// When the connection is lost after "write", the executor connects again and runs
// verifyScript, which removes the staged file first (a rename still pending on the host can
// then no longer happen) and then reads authorized_keys: what it reads is the final outcome.
var taskScript = prelude + locate + sums + `if [ -e "$ak" ]; then
	[ -r "$ak" ] || fail 6605 authorized-keys-unreadable
	echo "begin authorized_keys"
	od -An -v -tx1 < "$ak" || fail 6605 authorized-keys-unreadable
	echo "end authorized_keys"
else
	echo "absent authorized_keys"
fi
if [ "$2" = priv ]; then
	s=$4
	set -- "$3"
	` + indent(asRoot) + ` || exit $?
fi
echo "ready" || exit 1
read -r cmd size want expect sfx || exit 0
[ "$cmd" = write ] || exit 0
command -v sha256sum >/dev/null 2>&1 || command -v openssl >/dev/null 2>&1 || fail 6610 no-digest
tmp=''
cleanup() { if [ -n "$tmp" ]; then rm -f -- "$tmp"; fi; }
trap cleanup EXIT
trap 'exit 1' HUP INT TERM PIPE
if [ ! -e "$ssh" ]; then
	mkdir -m 700 -- "$ssh" || fail 6605 ssh-dir-create
	myid
	sshowner=$me sshperms=drwx------
fi
if [ "$sshowner" != "$uid" ]; then
	myid
	if [ "$me" = 0 ]; then chown "$uid:$gid" "$ssh" || fail 6605 ssh-dir-owner; fi
fi
case $sshperms in drwx------*) ;; *) chmod 700 "$ssh" || fail 6605 ssh-dir-mode ;; esac
cd -- "$ssh" || fail 6605 write-temp
tmp=.authorized_keys.kps-$sfx
# Exactly <size> bytes: the executor sends nothing more before it reads "staged".
set -C
{ head -c "$size" 2>/dev/null || dd bs=1 count="$size" 2>/dev/null; } > "$tmp" || fail 6605 write-temp
set +C
# Created 0600 by the umask and owned by us unless a default ACL says otherwise: checked
# here, before the rename, rather than after it, when the home directory or ~/.ssh carries an
# ACL (ls marks it with "+"); without one the create could not have done otherwise, and the
# check would only cost a process.
case $perms$sshperms in *+*)
	read -r perms _ owner _ <<EOF
$(ls -ln -- "$tmp")
EOF
	case $perms in -rw-------*) ;; *) chmod 600 "$tmp" || fail 6605 file-mode ;; esac
	[ "$owner" = "$uid" ] || fail 6605 file-owner
	;;
esac
sync -- "$tmp" 2>/dev/null || dd if="$tmp" of="$tmp" bs=65536 conv=notrunc,fsync 2>/dev/null || fail 6605 fsync
# Nobody reads "staged" once the connection is gone: then the file is removed on exit.
echo "staged" || exit 1
read -r go || exit 1
[ "$go" = commit ] || exit 1
if [ -L authorized_keys ]; then fail 6605 authorized-keys-symlink; fi
if [ -e authorized_keys ]; then
	[ -r authorized_keys ] || fail 6605 authorized-keys-unreadable
	sums "$tmp" authorized_keys || fail 6605 write-incomplete
	cur=$s2
else
	sums "$tmp" || fail 6605 write-incomplete
	cur=absent
fi
[ "$s1" = "$want" ] || fail 6605 write-incomplete
# Someone else changed the file since it was read: the caller edits it again.
[ "$cur" = "$expect" ] || fail retry changed
mv -f -- "$tmp" authorized_keys || fail 6605 rename
tmp=''
sync -- . 2>/dev/null
if command -v restorecon >/dev/null 2>&1; then
	restorecon -F -- "$ssh" "$ak" >/dev/null 2>&1 || echo "warn restorecon"
fi
[ -r authorized_keys ] || fail 6605 read-back
sums authorized_keys || fail 6605 read-back
[ "$s1" = "$want" ] || fail 6605 read-back
echo "done"
`

// privReadScript runs as root. Arguments: main sshd_config path.
const privReadScript = `LC_ALL=C; export LC_ALL
umask 077
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"; export PATH
fail() { printf 'kps-fail %s %s\n' "$1" "$2"; exit 3; }
main=$1
if [ -L "$main" ]; then fail 6606 sshd-config-symlink; fi
[ -f "$main" ] || fail 6606 sshd-config-missing
echo "stat sshd_config $(ls -ln -- "$main")"
echo "begin sshd_config"
od -An -v -tx1 < "$main" || fail 6606 sshd-config-unreadable
echo "end sshd_config"
v=$({ sshd -V 2>&1; ssh -V 2>&1; } | sed -n 's/.*\(OpenSSH_[0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -n 1)
echo "version $v"
`

// verifyScript settles a write whose connection was lost: it removes the staged file, so that
// a task script still running on the host can no longer rename it, then prints
// authorized_keys (as taskScript does) with its mode, its owner and the user's UID.
// Arguments: user, random suffix.
var verifyScript = prelude + locate + `rm -f -- "$ssh/.authorized_keys.kps-$2" || fail 6605 write-temp
if [ -e "$ak" ]; then
	[ -r "$ak" ] || fail 6605 authorized-keys-unreadable
	if command -v restorecon >/dev/null 2>&1; then
		restorecon -F -- "$ssh" "$ak" >/dev/null 2>&1 || echo "warn restorecon"
	fi
	echo "begin authorized_keys"
	od -An -v -tx1 < "$ak" || fail 6605 authorized-keys-unreadable
	echo "end authorized_keys"
	read -r perms _ owner _ <<EOF
$(ls -ln -- "$ak")
EOF
	echo "mode $perms"
	echo "owner $owner"
	echo "uid $uid"
else
	echo "absent authorized_keys"
fi
echo "done"
`

// configScript changes the daemon configuration as root and rolls everything back when
// validation, confirmation or the reload fails (§6.5 steps 2–5, §6.6). Arguments:
//
//	$1  action: disable or restore
//	$2  main sshd_config path
//	$3  file to write from stdin, "-" for none
//	$4  sha256 of stdin
//	$5  sha256 the file must have before it is replaced, "-" for no check, "absent"
//	$6  mode of the written file (octal)
//	$7  owner of the written file (uid:gid)
//	$8  random suffix for temporary names
//	$9  connection spec for sshd -T -C (user=…,host=…,addr=…)
//	$10 "kbd" or "challenge": the second keyword to confirm
//	$11… drop-in files of the service to remove
var configScript = `LC_ALL=C; export LC_ALL
umask 077
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"; export PATH
fail() { printf 'kps-fail %s %s\n' "$1" "$2"; exit 3; }
digest() {
	if command -v sha256sum >/dev/null 2>&1; then sha256sum | cut -c1-64
	elif command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 | sed 's/^.*= *//'
	else echo no-digest; fi
}
action=$1 main=$2 target=$3 want=$4 expect=$5 mode=$6 owner=$7 rnd=$8 spec=$9 second=${10}
shift 10
tmp='' bak='' backedup='' created='' changed=''
# On failure the backups were moved back and their directory is empty; should a move back
# have failed, the backup stays for the operator.
cleanup() {
	if [ -n "$tmp" ]; then rm -f -- "$tmp"; fi
	if [ -n "$bak" ]; then rmdir -- "$bak" 2>/dev/null; fi
}
trap cleanup EXIT
trap 'rollback "$@"; exit 1' HUP INT TERM PIPE
rollback() {
	if [ -n "$backedup" ]; then mv -f -- "$bak/target" "$target"
	elif [ -n "$created" ]; then rm -f -- "$target"; fi
	backedup='' created=''
	i=0
	for f in "$@"; do
		if [ -e "$bak/removed$i" ]; then mv -f -- "$bak/removed$i" "$f"; fi
		i=$((i + 1))
	done
}
command -v sshd >/dev/null 2>&1 || fail 6606 no-sshd
# Backups live in a hidden directory beside the main file, where no Include glob picks
# them up while sshd -t and sshd -T read the configuration.
bak=$(dirname -- "$main")/.kps-backup-$rnd
mkdir -m 700 -- "$bak" || fail 6606 write
if [ "$target" != - ]; then
	if [ -L "$target" ]; then fail 6606 target-symlink; fi
	dir=$(dirname -- "$target")
	if [ ! -d "$dir" ]; then (umask 022 && mkdir -p -- "$dir") || fail 6606 write; fi
	if [ -e "$target" ]; then cur=$(digest < "$target"); else cur=absent; fi
	if [ "$expect" != - ] && [ "$cur" != "$expect" ]; then fail 6606 changed; fi
	tmp=$dir/.$(basename -- "$target").kps-$rnd
	set -C
	{ cat > "$tmp"; } 2>/dev/null || fail 6606 write
	set +C
	[ "$(digest < "$tmp")" = "$want" ] || fail 6606 write
	if ! { chmod "$mode" "$tmp" && chown "$owner" "$tmp"; }; then fail 6606 write; fi
	sync -- "$tmp" 2>/dev/null || dd if="$tmp" of="$tmp" bs=65536 conv=notrunc,fsync 2>/dev/null || fail 6606 write
	if [ -e "$target" ]; then
		cp -p -- "$target" "$bak/target" || fail 6606 write
		backedup=1
	else
		created=1
	fi
	mv -f -- "$tmp" "$target" || { backedup='' created=''; fail 6606 write; }
	tmp='' changed=1
fi
i=0
for f in "$@"; do
	if [ -f "$f" ] && [ ! -L "$f" ] && head -n 1 -- "$f" | grep -q '^# Managed by KPS'; then
		mv -f -- "$f" "$bak/removed$i" || { rollback "$@"; fail 6606 write; }
		changed=1
	fi
	i=$((i + 1))
done
if [ "$action" = restore ] && [ -z "$changed" ]; then
	echo "unchanged"
	exit 0
fi
if ! sshd -t -f "$main" >&2; then rollback "$@"; fail 6606 validate; fi
effective=$(sshd -T -f "$main" -C "$spec" 2>/dev/null) || effective=$(sshd -T -f "$main" 2>/dev/null) || { rollback "$@"; fail 6606 validate; }
if [ "$action" = disable ]; then
	printf '%s\n' "$effective" | grep -qx 'passwordauthentication no' || { rollback "$@"; fail 6606 not-effective; }
	if [ "$second" = kbd ]; then
		printf '%s\n' "$effective" | grep -qx 'kbdinteractiveauthentication no' || { rollback "$@"; fail 6606 not-effective; }
	else
		printf '%s\n' "$effective" | grep -qx 'challengeresponseauthentication no' || { rollback "$@"; fail 6606 not-effective; }
	fi
fi
# From here on the new configuration is committed: a lost connection must neither roll back
# a configuration the daemon may already have loaded nor stop the script half-way.
trap '' HUP INT TERM PIPE
# Reload without dropping sessions: the systemd unit when it is the daemon of the pid file
# (or there is no pid file), else SIGHUP to the pid of the pid file.
pidfile=$(printf '%s\n' "$effective" | sed -n 's/^pidfile //p' | head -n 1)
pid=
if [ -n "$pidfile" ] && [ -f "$pidfile" ]; then pid=$(head -n 1 -- "$pidfile"); fi
reloaded=
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
	for unit in ssh.service sshd.service; do
		unitpid=$(systemctl show -p MainPID "$unit" 2>/dev/null | sed -n 's/^MainPID=//p')
		case $unitpid in ''|0) continue ;; esac
		if [ -z "$pid" ] || [ "$pid" = "$unitpid" ]; then
			systemctl reload "$unit" >&2 && reloaded=1
			break
		fi
	done
fi
if [ -z "$reloaded" ] && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
	kill -HUP "$pid" && reloaded=1
fi
if [ -z "$reloaded" ] && [ -z "$pid" ] && [ -d /run/systemd/system ] && systemctl is-active --quiet ssh.socket 2>/dev/null; then
	# Socket activation: every connection starts a daemon that reads the new configuration.
	reloaded=1
fi
[ -n "$reloaded" ] || { rollback "$@"; fail 6606 reload; }
rm -rf -- "$bak"
echo "done"
`

// indent indents continuation lines of a script fragment by one tab.
func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n\t") }
