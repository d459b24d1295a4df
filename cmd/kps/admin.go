package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/openkps/kps/api"
)

const adminUsage = `usage: kps admin [connection flags] <resource> <action> [flags]

  kps admin domain create NAME [--description TEXT]
  kps admin project create NAME [--domain-id ID] [--description TEXT]
  kps admin user create NAME [--domain-id ID] [--default-project-id ID] [--password-stdin]
  kps admin role grant --user-id ID --role admin|member|reader (--project-id ID | --domain-id ID)
  kps admin credential create [--user-id ID] [--description TEXT]

Connection flags (each also read from its environment variable):
  --endpoint (KPS_ENDPOINT)          service URL, default http://127.0.0.1:9800
  --login-domain (KPS_LOGIN_DOMAIN)  domain of the acting user, default Default
  --login-user (KPS_LOGIN_USER)      acting user, default admin
  --login-project (KPS_LOGIN_PROJECT) project to scope the token to, default local-1
The acting user's password comes from KPS_PASSWORD or from --password-file FILE, never
from a flag value. A new user's password is read from standard input with --password-stdin,
or generated and printed once. An access key's secret is printed once.`

// adminSession is a logged-in admin client.
type adminSession struct {
	client  *api.Client
	project string
	out     io.Writer
}

// admin runs `kps admin …` against a running service.
func admin(ctx context.Context, args []string, con console) error {
	fs := flag.NewFlagSet("admin", flag.ContinueOnError)
	fs.SetOutput(con.stderr)
	endpoint := fs.String("endpoint", "http://127.0.0.1:9800", "service URL")
	domain := fs.String("login-domain", "Default", "domain of the acting user")
	user := fs.String("login-user", "admin", "acting user")
	project := fs.String("login-project", "local-1", "project to scope the token to")
	pwFile := fs.String("password-file", "", "file holding the acting user's password (else KPS_PASSWORD)")
	fs.Usage = func() { fmt.Fprintln(con.stderr, adminUsage) }
	if err := parseWithEnv(fs, args, con.getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	rest := fs.Args()
	if len(rest) == 1 && rest[0] == "help" {
		fmt.Fprintln(con.stdout, adminUsage)
		return nil
	}
	if len(rest) < 2 {
		return usageError{errors.New(strings.TrimRight(adminUsage, "\n"))}
	}
	password := con.getenv("KPS_PASSWORD")
	if *pwFile != "" {
		b, err := os.ReadFile(*pwFile)
		if err != nil {
			return err
		}
		password = strings.TrimRight(string(b), "\r\n")
	}
	if password == "" {
		return usageError{errors.New("the acting user's password is needed: set KPS_PASSWORD or --password-file")}
	}
	c, projectID, err := api.Login(ctx, *endpoint, *domain, *user, password, *project)
	if err != nil {
		return err
	}
	s := &adminSession{client: c, project: projectID, out: con.stdout}
	switch rest[0] + " " + rest[1] {
	case "domain create":
		return s.createDomain(ctx, rest[2:], con)
	case "project create":
		return s.createProject(ctx, rest[2:], con)
	case "user create":
		return s.createUser(ctx, rest[2:], con)
	case "role grant":
		return s.grantRole(ctx, rest[2:], con)
	case "credential create":
		return s.createCredential(ctx, rest[2:], con)
	}
	return usageError{fmt.Errorf("unknown admin command %q\n%s", rest[0]+" "+rest[1], adminUsage)}
}

// subFlags parses the flags of one admin action; positional names come first or last.
func subFlags(name string, args []string, con console, define func(*flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(con.stderr)
	define(fs)
	var positional []string
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		positional, args = append(positional, args[0]), args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return nil, usageError{err}
	}
	return append(positional, fs.Args()...), nil
}

// print writes the resource the service answered, as indented JSON.
func (s *adminSession) print(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(s.out, string(b))
	return err
}

func oneName(args []string, what string) (string, error) {
	if len(args) != 1 || args[0] == "" {
		return "", usageError{fmt.Errorf("give exactly one %s name", what)}
	}
	return args[0], nil
}

func (s *adminSession) createDomain(ctx context.Context, args []string, con console) error {
	var desc string
	args, err := subFlags("domain create", args, con, func(fs *flag.FlagSet) { fs.StringVar(&desc, "description", "", "description") })
	if err != nil {
		return err
	}
	name, err := oneName(args, "domain")
	if err != nil {
		return err
	}
	var out map[string]any
	if err := s.client.Do(ctx, "POST", "/v3/domains", map[string]any{"domain": map[string]any{"name": name, "description": desc}}, &out); err != nil {
		return err
	}
	return s.print(out["domain"])
}

func (s *adminSession) createProject(ctx context.Context, args []string, con console) error {
	var desc, domainID string
	args, err := subFlags("project create", args, con, func(fs *flag.FlagSet) {
		fs.StringVar(&desc, "description", "", "description")
		fs.StringVar(&domainID, "domain-id", "", "domain of the project (default: the acting user's)")
	})
	if err != nil {
		return err
	}
	name, err := oneName(args, "project")
	if err != nil {
		return err
	}
	p := map[string]any{"name": name, "description": desc}
	if domainID != "" {
		p["domain_id"] = domainID
	}
	var out map[string]any
	if err := s.client.Do(ctx, "POST", "/v3/projects", map[string]any{"project": p}, &out); err != nil {
		return err
	}
	return s.print(out["project"])
}

func (s *adminSession) createUser(ctx context.Context, args []string, con console) error {
	var domainID, defaultProject string
	var fromStdin bool
	args, err := subFlags("user create", args, con, func(fs *flag.FlagSet) {
		fs.StringVar(&domainID, "domain-id", "", "domain of the user (default: the acting user's)")
		fs.StringVar(&defaultProject, "default-project-id", "", "project a token is scoped to when none is asked for")
		fs.BoolVar(&fromStdin, "password-stdin", false, "read the new user's password from standard input")
	})
	if err != nil {
		return err
	}
	name, err := oneName(args, "user")
	if err != nil {
		return err
	}
	password, generated := "", false
	if fromStdin {
		line, err := bufio.NewReader(con.stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		password = strings.TrimRight(line, "\r\n")
	} else {
		password, generated = generatePassword(), true
	}
	u := map[string]any{"name": name, "password": password, "enabled": true}
	if domainID != "" {
		u["domain_id"] = domainID
	}
	if defaultProject != "" {
		u["default_project_id"] = defaultProject
	}
	var out map[string]any
	if err := s.client.Do(ctx, "POST", "/v3/users", map[string]any{"user": u}, &out); err != nil {
		return err
	}
	if err := s.print(out["user"]); err != nil {
		return err
	}
	if generated {
		fmt.Fprintf(s.out, "password: %s\n(shown only now)\n", password)
	}
	return nil
}

func generatePassword() string {
	const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
	return randomString(alphabet, 24)
}

func (s *adminSession) grantRole(ctx context.Context, args []string, con console) error {
	var userID, role, projectID, domainID string
	if _, err := subFlags("role grant", args, con, func(fs *flag.FlagSet) {
		fs.StringVar(&userID, "user-id", "", "user")
		fs.StringVar(&role, "role", "", "admin, member or reader")
		fs.StringVar(&projectID, "project-id", "", "project the role applies to")
		fs.StringVar(&domainID, "domain-id", "", "domain the role applies to (all its projects)")
	}); err != nil {
		return err
	}
	if userID == "" || role == "" || (projectID == "") == (domainID == "") {
		return usageError{errors.New("usage: kps admin role grant --user-id ID --role ROLE (--project-id ID | --domain-id ID)")}
	}
	path := "/v3/projects/" + url.PathEscape(projectID)
	if domainID != "" {
		path = "/v3/domains/" + url.PathEscape(domainID)
	}
	path += "/users/" + url.PathEscape(userID) + "/roles/" + url.PathEscape(role)
	if err := s.client.Do(ctx, "PUT", path, nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(s.out, "granted %s to user %s on %s\n", role, userID, strings.TrimPrefix(strings.Split(path, "/users/")[0], "/v3/"))
	return nil
}

func (s *adminSession) createCredential(ctx context.Context, args []string, con console) error {
	var userID, desc string
	if _, err := subFlags("credential create", args, con, func(fs *flag.FlagSet) {
		fs.StringVar(&userID, "user-id", "", "owner of the access key (default: the acting user)")
		fs.StringVar(&desc, "description", "", "description")
	}); err != nil {
		return err
	}
	body := map[string]any{"description": desc}
	if userID != "" {
		body["user_id"] = userID
	}
	var out struct {
		Credential struct {
			Access string `json:"access"`
			Secret string `json:"secret"`
			UserID string `json:"user_id"`
		} `json:"credential"`
	}
	if err := s.client.Do(ctx, "POST", "/v3.0/OS-CREDENTIAL/credentials", map[string]any{"credential": body}, &out); err != nil {
		return err
	}
	if out.Credential.Access == "" || out.Credential.Secret == "" {
		return errors.New("the service answered no access key")
	}
	fmt.Fprintf(s.out, "access key (AK): %s\nsecret key (SK): %s\nuser: %s\nproject: %s\nThe SK is shown only now; store it safely.\n",
		out.Credential.Access, out.Credential.Secret, out.Credential.UserID, s.project)
	return nil
}

// randomString draws n characters of alphabet (at most 256) uniformly from the system's
// CSPRNG, rejecting bytes that would bias the choice.
func randomString(alphabet string, n int) string {
	limit := 256 - 256%len(alphabet)
	out := make([]byte, 0, n)
	buf := make([]byte, 64)
	for len(out) < n {
		rand.Read(buf)
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out)
}
