package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// envName is the KPS_* environment variable of a flag: --data-dir → KPS_DATA_DIR.
func envName(flagName string) string {
	return "KPS_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseWithEnv parses args into fs; a flag not given on the command line takes its value
// from its KPS_* environment variable when that is set. The command line wins.
func parseWithEnv(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
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

// usageWithEnv prints the flags with their environment variables.
func usageWithEnv(fs *flag.FlagSet, synopsis string) func() {
	return func() {
		fmt.Fprintf(os.Stderr, "Usage: %s\n\nFlags (each also read from its environment variable):\n", synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			fmt.Fprintf(os.Stderr, "  --%s (%s)\n    \t%s", f.Name, envName(f.Name), f.Usage)
			if f.DefValue != "" {
				fmt.Fprintf(os.Stderr, " (default %q)", f.DefValue)
			}
			fmt.Fprintln(os.Stderr)
		})
	}
}
