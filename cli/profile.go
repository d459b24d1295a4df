package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/openkps/kps/client"
)

// Profile is what `kps login` and `kps configure` remember: where the service is and how to
// authenticate. It holds a token or a secret key, so its file has mode 0600.
type Profile struct {
	Endpoint  string `json:"endpoint"`
	Domain    string `json:"domain,omitempty"`
	User      string `json:"user,omitempty"`
	Project   string `json:"project,omitempty"`
	ProjectID string `json:"project_id"`
	Token     string `json:"token,omitempty"`
	AccessKey string `json:"access_key,omitempty"`
	SecretKey string `json:"secret_key,omitempty"`
}

var profileNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$`)

// defaultEndpoint is where `kps serve` listens unless told otherwise.
const defaultEndpoint = "http://127.0.0.1:9800"

// configDir is where profiles live: KPS_CONFIG_DIR, else $XDG_CONFIG_HOME/kps, else
// $HOME/.config/kps. It reads the console's environment so that tests stay in a temp dir.
func (a *app) configDir() (string, error) {
	getenv := a.con.Getenv
	if d := getenv(envConfigDir); d != "" {
		return d, nil
	}
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "kps"), nil
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "kps"), nil
	}
	return "", errors.New("no directory for profiles: set KPS_CONFIG_DIR or HOME")
}

func (a *app) profilePath(name string) (string, error) {
	if !profileNameRE.MatchString(name) {
		return "", usagef("invalid profile name %q: letters, digits, '.', '_' and '-' only", name)
	}
	dir, err := a.configDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "profiles", name+".json"), nil
}

// loadProfile reads a profile; a missing one is empty (the environment may be enough), and so
// is every profile where there is no directory for them (no HOME, as for a service account).
func (a *app) loadProfile(name string) (Profile, error) {
	var p Profile
	if !profileNameRE.MatchString(name) {
		return p, usagef("invalid profile name %q: letters, digits, '.', '_' and '-' only", name)
	}
	if _, err := a.configDir(); err != nil {
		return p, nil
	}
	path, err := a.profilePath(name)
	if err != nil {
		return p, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("profile %s: %w", name, fileError(err))
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("profile %s (%s) is damaged: %v; log in again", name, path, err)
	}
	return p, nil
}

// saveProfile writes a profile with mode 0600 in a 0700 directory, replacing it atomically.
func (a *app) saveProfile(name string, p Profile) (string, error) {
	path, err := a.profilePath(name)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("saving profile %s: %w", name, fileError(err))
	}
	b, _ := json.MarshalIndent(p, "", "  ")
	if err := replaceFile(path, append(b, '\n')); err != nil {
		return "", fmt.Errorf("saving profile %s in %s: %w", name, path, fileError(err))
	}
	return path, nil
}

// profileNames lists the saved profiles.
func (a *app) profileNames() []string {
	dir, err := a.configDir()
	if err != nil {
		return nil
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "profiles"))
	var out []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".json"); ok && profileNameRE.MatchString(n) {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// connection is the profile with the global flags and the environment applied.
func (a *app) connection() (Profile, error) {
	name := a.profileName()
	p, err := a.loadProfile(name)
	if err != nil {
		return p, err
	}
	p.Endpoint = a.fromEnv("endpoint", envEndpoint, p.Endpoint)
	p.ProjectID = a.fromEnv("project-id", envProjectID, p.ProjectID)
	if ak := a.con.Getenv(envAccessKey); ak != "" {
		p.AccessKey, p.SecretKey, p.Token = ak, a.con.Getenv(envSecretKey), ""
	}
	return p, nil
}

// newClient returns a client of endpoint with the global --timeout and the tree's transport.
func (a *app) newClient(endpoint string) *client.Client {
	c := client.New(endpoint, a.timeout)
	c.HTTP.Transport = a.opts.Transport
	return c
}

// client is the API client of the profile, the flags and the environment (KPS_ACCESS_KEY and
// KPS_SECRET_KEY override the profile's credentials).
func (a *app) client() (*client.Client, error) {
	p, err := a.connection()
	if err != nil {
		return nil, err
	}
	if p.Endpoint == "" || p.ProjectID == "" || (p.Token == "" && p.AccessKey == "") {
		return nil, usagef("not logged in: run `kps login --profile %s` (or set %s, %s, %s and %s)",
			a.profileName(), envEndpoint, envProjectID, envAccessKey, envSecretKey)
	}
	c := a.newClient(p.Endpoint)
	c.ProjectID, c.Token, c.AccessKey, c.SecretKey = p.ProjectID, p.Token, p.AccessKey, p.SecretKey
	return c, nil
}

func (a *app) loginCommand() *cobra.Command {
	var domain, user, project, accessKey, pwFile string
	var pwStdin, skStdin bool
	cmd := &cobra.Command{
		Use:   "login",
		Short: "log in and remember the session in a profile",
		Long: "With a user and a password (a prompt without echo, --password-stdin, --password-file or\n" +
			"KPS_PASSWORD) the token is kept in the profile. With --access-key the profile holds the access\n" +
			"key and its secret (--secret-key-stdin, KPS_SECRET_KEY or a prompt) and every request is\n" +
			"signed. Logging in again reuses the profile's endpoint, domain, user and project. Profiles are\n" +
			"files of mode 0600 under $KPS_CONFIG_DIR, $XDG_CONFIG_HOME/kps or ~/.config/kps.",
		Example: "kps login --user admin --password-file kps-data/admin-password\n" +
			"kps login --endpoint https://kps.example.net --domain Default --user alice\n" +
			"echo \"$PASSWORD\" | kps login --user alice --password-stdin --profile prod\n" +
			"echo \"$SK\" | kps login --access-key AK1234 --secret-key-stdin --project-id 0123…",
		Args: noArgs,
	}
	f := cmd.Flags()
	f.StringVar(&domain, "domain", "", "domain of the user (default: the profile's, else Default)")
	f.StringVar(&user, "user", "", "user name (default: the profile's)")
	f.StringVar(&project, "project", "", "name of the project to work in (default: the profile's, else the service's region project, local-1)")
	f.BoolVar(&pwStdin, "password-stdin", false, "read the password from standard input (one line)")
	f.StringVar(&pwFile, "password-file", "", "read the password from this `file`")
	f.StringVar(&accessKey, "access-key", "", "access key ID (AK): sign requests with it instead of logging in")
	f.BoolVar(&skStdin, "secret-key-stdin", false, "read the secret key (SK) of --access-key from standard input")
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		if accessKey != "" {
			return a.saveAccessKey(ctx, accessKey, skStdin)
		}
		if skStdin {
			return usagef("--secret-key-stdin goes with --access-key")
		}
		name := a.profileName()
		old, err := a.loadProfile(name)
		if err != nil {
			return err
		}
		p := Profile{Endpoint: a.fromEnv("endpoint", envEndpoint, firstOf(old.Endpoint, defaultEndpoint)),
			Domain: firstOf(domain, old.Domain, "Default"), User: firstOf(user, old.User),
			Project: firstOf(project, old.Project, "local-1")}
		if p.User == "" {
			return usagef("--user is required (or --access-key)")
		}
		var pw string
		switch {
		case pwFile != "" && pwStdin:
			return usagef("give --password-file or --password-stdin, not both")
		case pwFile != "":
			b, err := os.ReadFile(pwFile)
			if err != nil {
				return fmt.Errorf("--password-file %s: %w", pwFile, fileError(err))
			}
			pw = strings.TrimRight(string(b), "\r\n")
		case pwStdin:
			if pw, err = a.secretLine("--password-stdin", "Password for "+p.User+": "); err != nil {
				return err
			}
		default:
			if pw = a.con.Getenv(envPassword); pw == "" {
				if pw, err = a.prompt("Password for " + p.User + ": "); err != nil {
					return usagef("no password: give --password-stdin, --password-file or %s (%v)", envPassword, err)
				}
			}
		}
		c := a.newClient(p.Endpoint)
		if err := c.Login(ctx, client.PasswordLogin{Domain: p.Domain, User: p.User, Password: pw, Project: p.Project}); err != nil {
			return err
		}
		p.ProjectID, p.Token = c.ProjectID, c.Token
		return a.reportProfile(name, p)
	})
	return cmd
}

func (a *app) configureCommand() *cobra.Command {
	var accessKey string
	var skStdin bool
	cmd := &cobra.Command{
		Use:   "configure",
		Short: "store an access key (AK/SK) profile",
		Long:  "The secret key is read from standard input (--secret-key-stdin), KPS_SECRET_KEY or a prompt\nwithout echo. The key is checked with one signed request before it is saved.",
		Example: "kps configure --endpoint https://kps.example.net --project-id 0123… --access-key AK1234\n" +
			"echo \"$SK\" | kps configure --access-key AK1234 --secret-key-stdin --project-id 0123… --profile ci",
		Args: noArgs,
	}
	cmd.Flags().StringVar(&accessKey, "access-key", "", "access key ID (AK), required")
	cmd.Flags().BoolVar(&skStdin, "secret-key-stdin", false, "read the secret key (SK) from standard input")
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		if accessKey == "" {
			return usagef("--access-key is required")
		}
		return a.saveAccessKey(ctx, accessKey, skStdin)
	})
	return cmd
}

// saveAccessKey checks an access key with one signed read and saves it in the profile.
func (a *app) saveAccessKey(ctx context.Context, accessKey string, skStdin bool) error {
	name := a.profileName()
	old, err := a.loadProfile(name)
	if err != nil {
		return err
	}
	p := Profile{Endpoint: a.fromEnv("endpoint", envEndpoint, firstOf(old.Endpoint, defaultEndpoint)),
		ProjectID: a.fromEnv("project-id", envProjectID, old.ProjectID), AccessKey: accessKey}
	if p.ProjectID == "" {
		return usagef("an access key profile needs --project-id (or %s)", envProjectID)
	}
	switch {
	case skStdin:
		p.SecretKey, err = a.secretLine("--secret-key-stdin", "Secret key: ")
	case a.con.Getenv(envSecretKey) != "":
		p.SecretKey = a.con.Getenv(envSecretKey)
	default:
		p.SecretKey, err = a.prompt("Secret key: ")
		if err != nil {
			return usagef("no secret key: give --secret-key-stdin or %s (%v)", envSecretKey, err)
		}
	}
	if err != nil {
		return err
	}
	if p.SecretKey == "" {
		return usagef("the secret key is empty")
	}
	c := a.newClient(p.Endpoint)
	c.ProjectID, c.AccessKey, c.SecretKey = p.ProjectID, p.AccessKey, p.SecretKey
	if _, err := c.ListKeyPairs(ctx, 1, ""); err != nil {
		return fmt.Errorf("the access key %s does not work: %w", accessKey, err)
	}
	return a.reportProfile(name, p)
}

// profileView is a profile as commands show it: never its token or secret key.
type profileView struct {
	Name      string `json:"name"`
	Path      string `json:"path"`
	Endpoint  string `json:"endpoint"`
	Domain    string `json:"domain,omitempty"`
	User      string `json:"user,omitempty"`
	Project   string `json:"project,omitempty"`
	ProjectID string `json:"project_id"`
	AccessKey string `json:"access_key,omitempty"`
	Auth      string `json:"auth"`
}

func view(name, path string, p Profile) profileView {
	v := profileView{Name: name, Path: path, Endpoint: p.Endpoint, Domain: p.Domain, User: p.User,
		Project: p.Project, ProjectID: p.ProjectID, AccessKey: p.AccessKey, Auth: "none"}
	switch {
	case p.AccessKey != "":
		v.Auth = "access key"
	case p.Token != "":
		v.Auth = "token"
	}
	return v
}

func (a *app) reportProfile(name string, p Profile) error {
	path, err := a.saveProfile(name, p)
	if err != nil {
		return err
	}
	who := p.AccessKey
	if who == "" {
		who = p.Domain + "/" + p.User
	}
	fmt.Fprintf(a.con.Stderr, "kps: profile %q saved in %s (%s, project %s)\n", name, path, who, p.ProjectID)
	if a.outputFormat() != "table" {
		return a.emit(view(name, path, p), nil)
	}
	return nil
}

func (a *app) profileCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "profile", Short: "list, show and delete the saved profiles",
		Example: "kps profile list\nkps profile delete old"}
	list := &cobra.Command{Use: "list", Short: "list the saved profiles", Args: noArgs, Example: "kps profile list -o json"}
	list.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		var rows []profileView
		for _, n := range a.profileNames() {
			p, err := a.loadProfile(n)
			if err != nil {
				return err
			}
			path, _ := a.profilePath(n)
			rows = append(rows, view(n, path, p))
		}
		if rows == nil {
			rows = []profileView{}
		}
		return a.emit(rows, func(w io.Writer) {
			t := newTable(w, "name", "endpoint", "user", "project", "auth")
			for _, r := range rows {
				t.row(r.Name, r.Endpoint, firstOf(r.AccessKey, r.Domain+"/"+r.User), firstOf(r.Project, r.ProjectID), r.Auth)
			}
			t.flush()
		})
	})
	show := &cobra.Command{Use: "show [NAME]", Short: "show a profile (default: the one in use), without its secrets",
		Args: cobra.MaximumNArgs(1), Example: "kps profile show\nkps profile show prod -o yaml", ValidArgsFunction: a.completeProfileArgs}
	show.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		name := a.profileName()
		if len(args) == 1 {
			name = args[0]
		}
		path, err := a.profilePath(name)
		if err != nil {
			return err
		}
		if _, err := os.Stat(path); err != nil {
			return fmt.Errorf("no profile %s (kps profile list)", name)
		}
		p, err := a.loadProfile(name)
		if err != nil {
			return err
		}
		v := view(name, path, p)
		return a.emit(v, func(w io.Writer) {
			details(w, "name", v.Name, "path", v.Path, "endpoint", v.Endpoint, "domain", v.Domain, "user", v.User,
				"project", v.Project, "project_id", v.ProjectID, "access_key", v.AccessKey, "auth", v.Auth)
		})
	})
	del := &cobra.Command{Use: "delete NAME", Short: "delete a saved profile (its token stays valid until it expires)",
		Args: exactArgs(1, "profile name"), Example: "kps profile delete old", ValidArgsFunction: a.completeProfileArgs}
	del.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		path, err := a.profilePath(args[0])
		if err != nil {
			return err
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("profile %s: %w", args[0], fileError(err))
		}
		return a.emitDone([]doneRow{{Name: args[0], Result: "deleted"}})
	})
	cmd.AddCommand(list, show, del)
	return cmd
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
