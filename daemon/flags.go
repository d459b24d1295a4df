package daemon

import (
	"flag"
	"fmt"
	"strings"
)

// `kps serve` reads each of its settings from a flag or from its KPS_* environment variable;
// the command line wins. Only serve does: the client commands read the environment for the
// connection, the profile, the output and secrets only (package cli).

// envName is the KPS_* environment variable of a flag: --data-dir → KPS_DATA_DIR.
func envName(flagName string) string {
	return "KPS_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseWithEnv parses args into fs, then applies the environment (applyEnv).
func parseWithEnv(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	return applyEnv(fs, func(name string) bool { return given[name] }, getenv)
}

// applyEnv sets every flag of fs that the command line did not give from its KPS_* variable,
// when that is set.
func applyEnv(fs *flag.FlagSet, given func(string) bool, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given(f.Name) || err != nil {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment variable %s: %w", envName(f.Name), e)
			}
		}
	})
	return err
}
