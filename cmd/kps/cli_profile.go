package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/openkps/kps/api"
)

// profile is what `kps login` and `kps configure` remember: where the service is and how to
// authenticate. It holds a token or a secret key, so its file has mode 0600.
type profile struct {
	Endpoint  string `json:"endpoint"`
	Domain    string `json:"domain,omitempty"`
	User      string `json:"user,omitempty"`
	Project   string `json:"project,omitempty"`
	ProjectID string `json:"project_id"`
	Token     string `json:"token,omitempty"`
	AccessKey string `json:"access_key,omitempty"`
	SecretKey string `json:"secret_key,omitempty"`
}

var profileName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// configDir is where profiles live: KPS_CONFIG_DIR, else $XDG_CONFIG_HOME/kps, else
// $HOME/.config/kps. It reads the console's environment so that tests stay in a temp dir.
func configDir(getenv func(string) string) (string, error) {
	if d := getenv("KPS_CONFIG_DIR"); d != "" {
		return d, nil
	}
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "kps"), nil
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "kps"), nil
	}
	return "", errors.New("no config directory: set KPS_CONFIG_DIR or HOME")
}

func profilePath(getenv func(string) string, name string) (string, error) {
	if !profileName.MatchString(name) || name == "." || name == ".." {
		return "", usageError{fmt.Errorf("invalid profile name %q", name)}
	}
	dir, err := configDir(getenv)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "profiles", name+".json"), nil
}

// loadProfile reads a profile; a missing one is empty (the environment may be enough).
func loadProfile(getenv func(string) string, name string) (profile, error) {
	var p profile
	path, err := profilePath(getenv, name)
	if err != nil {
		return p, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("profile %s: %w", path, err)
	}
	return p, nil
}

// saveProfile writes a profile with mode 0600 in a 0700 directory, replacing it atomically.
func saveProfile(getenv func(string) string, name string, p profile) (string, error) {
	path, err := profilePath(getenv, name)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	b, _ := json.MarshalIndent(p, "", "  ")
	return path, writePrivateFile(path, append(b, '\n'))
}

// writePrivateFile writes a secret to path with mode 0600, never widening an existing file's
// mode: it writes a fresh 0600 file beside it and renames it into place.
func writePrivateFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func loginCommand() *cliCommand {
	return &cliCommand{name: "login", short: "log in and remember the session in a profile",
		long: "With a user and password (from a prompt without echo, --password-stdin, --password-file\n" +
			"or KPS_PASSWORD) the token is cached in the profile. With --access-key the profile holds the\n" +
			"access key and its secret (read with --secret-key-stdin or from KPS_SECRET_KEY) and every\n" +
			"request is signed. Logging in again reuses the profile's endpoint, user and project.\n" +
			"Profiles are files of mode 0600 under $KPS_CONFIG_DIR, $XDG_CONFIG_HOME/kps or ~/.config/kps.",
		examples: []string{
			"kps login --endpoint https://kps.example.net --domain Default --user alice",
			"echo \"$PASSWORD\" | kps login --user alice --password-stdin --profile prod",
			"echo \"$SK\" | kps login --access-key AK1234 --secret-key-stdin --project-id 0123…",
		},
		setup: loginSetup(false)}
}

func configureCommand() *cliCommand {
	return &cliCommand{name: "configure", short: "store an access key (AK/SK) profile",
		long: "The secret key is read from standard input (--secret-key-stdin), KPS_SECRET_KEY or a prompt.",
		examples: []string{
			"kps configure --endpoint https://kps.example.net --project-id 0123… --access-key AK1234",
			"echo \"$SK\" | kps configure --access-key AK1234 --secret-key-stdin --project-id 0123… --profile ci",
		},
		setup: loginSetup(true)}
}

// loginSetup is `kps login` and, with akOnly, `kps configure`.
func loginSetup(akOnly bool) func(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
	return func(fs *flag.FlagSet, c *cliContext) func(context.Context, []string) error {
		var domain, user, project, accessKey, pwFile string
		var pwStdin, skStdin bool
		if !akOnly {
			fs.StringVar(&domain, "domain", "Default", "domain of the user")
			fs.StringVar(&user, "user", "", "user name")
			fs.StringVar(&project, "project", "", "project name to scope the token to (default: the service's region project, local-1)")
			fs.BoolVar(&pwStdin, "password-stdin", false, "read the password from standard input")
			fs.StringVar(&pwFile, "password-file", "", "read the password from this file")
		}
		fs.StringVar(&accessKey, "access-key", "", "access key ID (AK): sign requests instead of logging in")
		fs.BoolVar(&skStdin, "secret-key-stdin", false, "read the secret key (SK) from standard input")
		return func(ctx context.Context, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unexpected arguments %q", args)}
			}
			old, err := loadProfile(c.con.getenv, c.profile)
			if err != nil {
				return err
			}
			p := profile{Endpoint: firstOf(c.endpoint, old.Endpoint, "http://127.0.0.1:9800"), ProjectID: firstOf(c.projectID, old.ProjectID)}
			given := map[string]bool{} // on the command line or from the environment
			fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
			if !akOnly && user != "" && accessKey == c.con.getenv("KPS_ACCESS_KEY") {
				// KPS_ACCESS_KEY in the environment does not turn `kps login --user` into AK/SK.
				accessKey = ""
			}
			if akOnly && accessKey == "" {
				return usageError{errors.New("--access-key is required")}
			}
			if accessKey != "" {
				if p.ProjectID == "" {
					return usageError{errors.New("an access key profile needs --project-id (or KPS_PROJECT_ID)")}
				}
				sk, err := readSecret(c.con, skStdin, "KPS_SECRET_KEY", "Secret key: ")
				if err != nil {
					return err
				}
				if sk == "" {
					return usageError{errors.New("empty secret key")}
				}
				p.AccessKey, p.SecretKey = accessKey, sk
				// Check the key before remembering it: one cheap signed read.
				cl := &api.Client{BaseURL: p.Endpoint, AccessKey: p.AccessKey, SecretKey: p.SecretKey}
				if err := cl.Do(ctx, "GET", "/v3/"+p.ProjectID+"/keypairs?limit=1", nil, nil); err != nil {
					return err
				}
			} else {
				// Logging in again reuses the profile's user and domain.
				user = firstOf(user, old.User)
				if !given["domain"] && c.con.getenv("KPS_DOMAIN") == "" && old.Domain != "" {
					domain = old.Domain
				}
				if user == "" {
					return usageError{errors.New("--user is required (or --access-key)")}
				}
				var pw string
				if pwFile != "" {
					b, err := os.ReadFile(pwFile)
					if err != nil {
						return err
					}
					pw = strings.TrimRight(string(b), "\r\n")
				} else if pw, err = readSecret(c.con, pwStdin, "KPS_PASSWORD", "Password for "+user+": "); err != nil {
					return err
				}
				project = firstOf(project, old.Project, "local-1")
				cl, projectID, err := api.Login(ctx, p.Endpoint, domain, user, pw, project)
				if err != nil {
					return err
				}
				p.Domain, p.User, p.Project, p.ProjectID, p.Token = domain, user, project, projectID, cl.Token
			}
			path, err := saveProfile(c.con.getenv, c.profile, p)
			if err != nil {
				return err
			}
			who := p.AccessKey
			if who == "" {
				who = p.Domain + "/" + p.User
			}
			fmt.Fprintf(c.con.stderr, "kps: profile %q saved in %s (%s, project %s)\n", c.profile, path, who, p.ProjectID)
			return nil
		}
	}
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
