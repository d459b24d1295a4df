package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/openkps/kps"
	"github.com/openkps/kps/client"
)

func (a *app) adminCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "admin", Short: "domains, projects, users, roles and access keys of a running service",
		Long: "The admin commands act as the user of the profile (kps login), like every other command; that\n" +
			"user needs the admin role where it acts.",
		Example: "kps admin user create alice --password-stdin <<<'a-long-passphrase'\n" +
			"kps admin role grant --user-id <ID> --role member --project-id <project ID>\n" +
			"kps admin credential create --user-id <ID>"}
	domain := &cobra.Command{Use: "domain", Short: "create and list domains (operator admins)", Example: "kps admin domain list"}
	domain.AddCommand(a.adminDomainCreate(), a.adminDomainList())
	project := &cobra.Command{Use: "project", Short: "create and list projects", Example: "kps admin project list"}
	project.AddCommand(a.adminProjectCreate(), a.adminProjectList())
	user := &cobra.Command{Use: "user", Short: "create, list and delete users", Example: "kps admin user list"}
	user.AddCommand(a.adminUserCreate(), a.adminUserList(), a.adminUserDelete())
	role := &cobra.Command{Use: "role", Short: "grant and revoke roles (reader < member < admin)", Example: "kps admin role grant --user-id <ID> --role reader --project-id <ID>"}
	role.AddCommand(a.adminRole(true), a.adminRole(false))
	cred := &cobra.Command{Use: "credential", Short: "access keys (AK/SK) of users", Example: "kps admin credential list --user-id <ID>"}
	cred.AddCommand(a.adminCredentialCreate(), a.adminCredentialList(), a.adminCredentialDelete())
	cmd.AddCommand(domain, project, user, role, cred)
	return cmd
}

func (a *app) adminDomainCreate() *cobra.Command {
	var desc string
	cmd := &cobra.Command{Use: "create NAME", Short: "create a domain", Args: exactArgs(1, "domain name"),
		Example: "kps admin domain create acme --description 'ACME Corp'"}
	cmd.Flags().StringVar(&desc, "description", "", "description")
	cmd.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
		d, err := cl.CreateDomain(ctx, args[0], desc)
		if err != nil {
			return err
		}
		return a.emit(d, func(w io.Writer) {
			details(w, "id", d.ID, "name", d.Name, "enabled", d.Enabled, "description", d.Description)
		})
	})
	return cmd
}

func (a *app) adminDomainList() *cobra.Command {
	return listCommand(a, &cobra.Command{Use: "list", Short: "list the domains you may see", Args: noArgs, Example: "kps admin domain list -o json"},
		func(ctx context.Context, cl *client.Client) ([]client.Domain, error) { return cl.ListDomains(ctx) },
		[]string{"id", "name", "enabled", "description"},
		func(d client.Domain) []any { return []any{d.ID, d.Name, d.Enabled, d.Description} })
}

// listCommand completes cmd as a list: fetch's items, as a table of columns (one row each) or
// in the output format asked for.
func listCommand[T any](a *app, cmd *cobra.Command, fetch func(context.Context, *client.Client) ([]T, error), columns []string, row func(T) []any) *cobra.Command {
	cmd.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
		items, err := fetch(ctx, cl)
		if err != nil {
			return err
		}
		return a.emit(orEmpty(items), func(w io.Writer) {
			t := newTable(w, columns...)
			for _, item := range items {
				t.row(row(item)...)
			}
			t.flush()
		})
	})
	return cmd
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (a *app) adminProjectCreate() *cobra.Command {
	var desc, domainID string
	cmd := &cobra.Command{Use: "create NAME", Short: "create a project", Args: exactArgs(1, "project name"),
		Example: "kps admin project create local-1_ops --description 'ops team'"}
	cmd.Flags().StringVar(&desc, "description", "", "description")
	cmd.Flags().StringVar(&domainID, "domain-id", "", "domain of the project (default: yours)")
	cmd.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
		p, err := cl.CreateProject(ctx, args[0], domainID, desc)
		if err != nil {
			return err
		}
		return a.emit(p, func(w io.Writer) {
			details(w, "id", p.ID, "name", p.Name, "domain_id", p.DomainID, "enabled", p.Enabled, "description", p.Description)
		})
	})
	return cmd
}

func (a *app) adminProjectList() *cobra.Command {
	return listCommand(a, &cobra.Command{Use: "list", Short: "list the projects you administer", Args: noArgs, Example: "kps admin project list"},
		func(ctx context.Context, cl *client.Client) ([]client.Project, error) { return cl.ListProjects(ctx) },
		[]string{"id", "name", "domain_id", "enabled", "description"},
		func(p client.Project) []any { return []any{p.ID, p.Name, p.DomainID, p.Enabled, p.Description} })
}

// newUserView is a created user, with its password when kps generated it.
type newUserView struct {
	client.User
	Password string `json:"password,omitempty"`
}

func (a *app) adminUserCreate() *cobra.Command {
	var domainID, defaultProject string
	var pwStdin, askPassword bool
	cmd := &cobra.Command{Use: "create NAME", Short: "create a user (with a generated password unless one is given)", Args: exactArgs(1, "user name"),
		Example: "kps admin user create alice --password-stdin <<<'a-long-passphrase'\nkps admin user create bob --ask-password\nkps admin user create ci    # prints a generated password once"}
	cmd.Flags().StringVar(&domainID, "domain-id", "", "domain of the user (default: yours)")
	cmd.Flags().StringVar(&defaultProject, "default-project-id", "", "project a token is scoped to when none is asked for")
	cmd.Flags().BoolVar(&pwStdin, "password-stdin", false, "read the new user's password from standard input (one line)")
	cmd.Flags().BoolVar(&askPassword, "ask-password", false, "ask for the new user's password on the terminal, without echo")
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		var password string
		var err error
		generated := false
		switch {
		case pwStdin && askPassword:
			return usagef("give --password-stdin or --ask-password, not both")
		case pwStdin:
			if password, err = a.secretLine("--password-stdin", "Password for "+args[0]+": "); err != nil {
				return err
			}
		case askPassword:
			if password, err = a.prompt("Password for " + args[0] + ": "); err != nil {
				return usagef("--ask-password: %v", err)
			}
		default:
			password, generated = generatePassword(), true
		}
		cl, err := a.client()
		if err != nil {
			return err
		}
		u, err := cl.CreateUser(ctx, client.NewUser{Name: args[0], Password: password, DomainID: domainID, DefaultProjectID: defaultProject, Enabled: true})
		if err != nil {
			return err
		}
		v := newUserView{User: *u}
		if generated {
			v.Password = password
		}
		return a.emit(v, func(w io.Writer) {
			details(w, "id", u.ID, "name", u.Name, "domain_id", u.DomainID, "enabled", u.Enabled, "default_project_id", u.DefaultProjectID)
			if generated {
				fmt.Fprintf(w, "password: %s\n(shown only now)\n", password)
			}
		})
	})
	return cmd
}

func generatePassword() string {
	const alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
	return kps.RandomString(alphabet, 24)
}

func (a *app) adminUserList() *cobra.Command {
	return listCommand(a, &cobra.Command{Use: "list", Short: "list the users you administer", Args: noArgs, Example: "kps admin user list -o yaml"},
		func(ctx context.Context, cl *client.Client) ([]client.User, error) { return cl.ListUsers(ctx) },
		[]string{"id", "name", "domain_id", "enabled", "default_project_id"},
		func(u client.User) []any { return []any{u.ID, u.Name, u.DomainID, u.Enabled, u.DefaultProjectID} })
}

func (a *app) adminUserDelete() *cobra.Command {
	cmd := &cobra.Command{Use: "delete USER_ID...", Short: "delete users", Args: minArgs(1, "user ID"), Example: "kps admin user delete 5f2e…"}
	cmd.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
		return a.eachName(args, "deleted", func(id string) error { return cl.DeleteUser(ctx, id) })
	})
	return cmd
}

func (a *app) adminRole(grant bool) *cobra.Command {
	var userID, role, projectID, domainID string
	cmd := &cobra.Command{Use: "grant", Short: "grant a role to a user on a project or a domain", Args: noArgs,
		Example: "kps admin role grant --user-id <ID> --role member --project-id <ID>\nkps admin role grant --user-id <ID> --role admin --domain-id <ID>"}
	if !grant {
		cmd.Use, cmd.Short = "revoke", "revoke a role granted on a project or a domain"
		cmd.Example = "kps admin role revoke --user-id <ID> --role member --project-id <ID>"
	}
	cmd.Flags().StringVar(&userID, "user-id", "", "the user")
	cmd.Flags().StringVar(&role, "role", "", "admin, member or reader")
	cmd.Flags().StringVar(&projectID, "project-id", "", "the project the role applies to (not the profile's)")
	cmd.Flags().StringVar(&domainID, "domain-id", "", "the domain the role applies to (all its projects)")
	cmd.RegisterFlagCompletionFunc("role", cobra.FixedCompletions([]string{"admin", "member", "reader"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RunE = a.leaf(func(ctx context.Context, cmd *cobra.Command, args []string) error {
		// This command's --project-id shadows the global flag: it names the target of the role.
		if userID == "" || role == "" || (projectID == "") == (domainID == "") {
			return usagef("give --user-id, --role and one of --project-id and --domain-id")
		}
		if !kps.Role(role).Valid() {
			return usagef("--role %q: admin, member or reader", role)
		}
		cl, err := a.client()
		if err != nil {
			return err
		}
		ra := client.RoleAssignment{UserID: userID, Role: kps.Role(role), ProjectID: projectID, DomainID: domainID}
		verb := "granted"
		if grant {
			err = cl.GrantRole(ctx, ra)
		} else {
			verb = "revoked"
			err = cl.RevokeRole(ctx, ra)
		}
		if err != nil {
			return err
		}
		on := "project " + projectID
		if domainID != "" {
			on = "domain " + domainID
		}
		return a.emitDone([]doneRow{{Name: fmt.Sprintf("role %s of user %s on %s", role, userID, on), Result: verb}})
	})
	return cmd
}

func (a *app) adminCredentialCreate() *cobra.Command {
	var userID, desc string
	cmd := &cobra.Command{Use: "create", Short: "create an access key (AK/SK); the secret is shown only once", Args: noArgs,
		Example: "kps admin credential create --user-id <ID> --description ci\nkps admin credential create -o json > ak.json"}
	cmd.Flags().StringVar(&userID, "user-id", "", "owner of the access key (default: you)")
	cmd.Flags().StringVar(&desc, "description", "", "description")
	cmd.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
		k, err := cl.CreateAccessKey(ctx, userID, desc)
		if err != nil {
			return err
		}
		if k.Access == "" || k.Secret == "" {
			return fmt.Errorf("the service answered no access key")
		}
		return a.emit(k, func(w io.Writer) {
			fmt.Fprintf(w, "access key (AK): %s\nsecret key (SK): %s\nuser: %s\nproject: %s\nThe SK is shown only now; store it safely.\n",
				k.Access, k.Secret, k.UserID, cl.ProjectID)
		})
	})
	return cmd
}

func (a *app) adminCredentialList() *cobra.Command {
	var userID string
	cmd := listCommand(a, &cobra.Command{Use: "list", Short: "list access keys (never their secrets)", Args: noArgs, Example: "kps admin credential list --user-id <ID>"},
		func(ctx context.Context, cl *client.Client) ([]client.AccessKey, error) {
			return cl.ListAccessKeys(ctx, userID)
		},
		[]string{"access", "user_id", "status", "created", "description"},
		func(k client.AccessKey) []any {
			return []any{k.Access, k.UserID, k.Status, k.CreateTime, k.Description}
		})
	cmd.Flags().StringVar(&userID, "user-id", "", "whose access keys (default: yours)")
	return cmd
}

func (a *app) adminCredentialDelete() *cobra.Command {
	cmd := &cobra.Command{Use: "delete ACCESS_KEY...", Short: "delete access keys", Args: minArgs(1, "access key"),
		Example: "kps admin credential delete AK1234…"}
	cmd.RunE = a.withClient(func(ctx context.Context, cmd *cobra.Command, args []string, cl *client.Client) error {
		return a.eachName(args, "deleted", func(ak string) error { return cl.DeleteAccessKey(ctx, ak) })
	})
	return cmd
}
