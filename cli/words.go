package cli

import (
	"errors"
	"regexp"
	"strings"

	"github.com/openkps/kps"
)

// The service names what it refuses by its place in the request body
// ("batch_keypairs[3].server.auth.key"); the person at the terminal gave a flag or a file.
// inWords rewrites those places in the command line's words.

var batchItem = regexp.MustCompile(`batch_keypairs\[\d+\]\.`)

var wireWords = strings.NewReplacer(
	"server.auth.key", "the login credential (--auth-password-stdin, --ask-auth-password or --auth-key-file)",
	"server.auth.type", "the login credential (--auth-password-stdin, --ask-auth-password or --auth-key-file)",
	"server.auth", "the login credential (--auth-password-stdin, --ask-auth-password or --auth-key-file)",
	"server.port", "--port",
	"server.disable_password", "--disable-password",
	"server.keep_login_key", "--keep-login-key",
	"server.address", "--address",
	"server.user", "--user",
	"server.name", "--name",
	"server.host_keys", "--host-key",
	"server.sshd_config", "--sshd-config",
	"server.credential.key", "the service's credential (--credential-…)",
	"server.credential", "the service's credential (--credential-…)",
	"server.id", "the server ID",
	"keypair.public_key", "--public-key-file",
	"keypair.key_protection.private_key", "--private-key-file",
	"keypair.description", "--description",
	"keypair.name", "the key pair name",
	"keypair_name", "the key pair name",
)

func inWords(msg string) string {
	return wireWords.Replace(batchItem.ReplaceAllString(msg, ""))
}

// errorText is the message of err for a result row: the service's message for its errors (the
// code has its own column), the whole error for a local one.
func errorText(err error) string {
	var e *kps.Error
	if errors.As(err, &e) {
		return inWords(e.Message)
	}
	return inWords(err.Error())
}
