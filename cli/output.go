package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"
)

// emit writes v on standard output as JSON or YAML (-o), or calls table for the readable form.
// Every command's result goes through here, so every command honours -o.
func (a *app) emit(v any, table func(w io.Writer)) error {
	out := a.con.Stdout
	switch a.outputFormat() {
	case "json":
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(out, string(b))
		return err
	case "yaml":
		b, err := yaml.Marshal(yamlValue(v))
		if err != nil {
			return err
		}
		_, err = out.Write(b)
		return err
	}
	table(out)
	return nil
}

// yamlValue turns v into what YAML prints with the JSON member names: through JSON, with
// whole numbers as integers (JSON decodes them as float64, which YAML would print as 1.7e+12).
func yamlValue(v any) any {
	var generic any
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	if dec.Decode(&generic) != nil {
		return v
	}
	return numbers(generic)
}

func numbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

// table is a tab-aligned table with an upper-case header.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, cols ...string) *table {
	t := &table{tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	for i := range cols {
		cols[i] = strings.ToUpper(cols[i])
	}
	fmt.Fprintln(t.tw, strings.Join(cols, "\t"))
	return t
}

func (t *table) row(cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = cell(c)
	}
	fmt.Fprintln(t.tw, strings.Join(s, "\t"))
}

func (t *table) flush() { t.tw.Flush() }

// cell renders one value for a table; tabs and line breaks would break its columns.
func cell(v any) string {
	var s string
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		s = x
	case time.Time:
		if x.IsZero() {
			return ""
		}
		s = x.UTC().Format(time.RFC3339)
	case []string:
		s = strings.Join(x, ",")
	case bool:
		s = strconv.FormatBool(x)
	default:
		s = fmt.Sprint(v)
	}
	return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s)
}

// details prints label: value lines.
func details(w io.Writer, pairs ...any) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i := 0; i+1 < len(pairs); i += 2 {
		fmt.Fprintf(tw, "%s:\t%s\n", pairs[i], cell(pairs[i+1]))
	}
	tw.Flush()
}

// millis is an epoch-milliseconds time of the API.
func millis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// plural is "1 server" or "3 servers".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "s") {
		return fmt.Sprintf("%d %ses", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
