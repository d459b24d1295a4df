package sshhost

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// What a task reads from a host is bounded by what the job needs, and checked while it is
// read: a host may print without end (docs/SECURITY.md §5.2). The scripts print the two files
// a task handles as hex (od, three bytes of output per byte of file), a few short lines of
// fields and markers, and perhaps some lines a login script printed. Each part has its bound;
// nothing beyond them is kept, and the session is ended as soon as one is passed.
const (
	// MaxAuthorizedKeys bounds ~/.ssh/authorized_keys, as stored on the host: several
	// thousand keys.
	MaxAuthorizedKeys = 4 << 20
	// MaxSSHDConfig bounds the main sshd_config.
	MaxSSHDConfig = 1 << 20
	// maxOtherOutput bounds every other line of a session, together: fields, markers, a
	// failure line, and what a shell start-up file may print.
	maxOtherOutput = 64 << 10
	// maxLine bounds one line. od prints 49 bytes a line; fields are short.
	maxLine = 16 << 10
)

// sectionLimits are the hex sections the scripts print and the bound of each, in bytes of the
// file. A "begin" line naming anything else is an ordinary line.
var sectionLimits = map[string]int{
	"authorized_keys": MaxAuthorizedKeys,
	"sshd_config":     MaxSSHDConfig,
}

// errOverflow is the failure of a host that sent more than the bounds.
type errOverflow struct{ what string }

func (e *errOverflow) Error() string { return e.what }

// errMalformed is output the scripts never print (a section that is not hex).
type errMalformed struct{ err error }

func (e *errMalformed) Error() string { return e.err.Error() }

// scriptOutput parses a script's standard output as it arrives, one line at a time: "begin
// <name>" / hex lines / "end <name>" sections, decoded into their bytes within their bounds;
// "<name> <value>" fields; marker lines. It keeps the ordinary lines (fields, markers, a
// "kps-fail" line) within maxOtherOutput, for failure.
type scriptOutput struct {
	sections map[string][]byte
	fields   map[string]string
	other    []byte // ordinary lines, as printed

	section string // the section being read, "" outside
	buf     []byte // its bytes so far
	limit   int    // its bound
	nibble  int    // a hex digit carried over from the previous field, or -1
}

func newScriptOutput() *scriptOutput {
	return &scriptOutput{sections: map[string][]byte{}, fields: map[string]string{}, nibble: -1}
}

// line takes one line without its newline. It fails when the line passes a bound (an
// *errOverflow) or a section holds something other than hex.
func (o *scriptOutput) line(l []byte) error {
	if o.section != "" {
		if string(l) == "end "+o.section {
			if o.nibble >= 0 {
				return &errMalformed{fmt.Errorf("section %s: an odd number of hex digits", o.section)}
			}
			o.sections[o.section] = o.buf
			o.section, o.buf = "", nil
			return nil
		}
		return o.hex(l)
	}
	if len(o.other)+len(l)+1 > maxOtherOutput {
		return &errOverflow{"the host sent more output than a task needs"}
	}
	o.other = append(append(o.other, l...), '\n')
	s := string(l)
	if name, ok := strings.CutPrefix(s, "begin "); ok {
		if limit, known := sectionLimits[name]; known {
			o.section, o.limit, o.buf, o.nibble = name, limit, nil, -1
			delete(o.sections, name)
			return nil
		}
	}
	if s != "" {
		k, v, _ := strings.Cut(s, " ")
		o.fields[k] = v
	}
	return nil
}

// hex decodes a line of od's "-An -v -tx1" output: hex digits separated by blanks.
func (o *scriptOutput) hex(l []byte) error {
	for _, c := range l {
		var v int
		switch {
		case c == ' ' || c == '\t' || c == '\r':
			continue
		case '0' <= c && c <= '9':
			v = int(c - '0')
		case 'a' <= c && c <= 'f':
			v = int(c-'a') + 10
		case 'A' <= c && c <= 'F':
			v = int(c-'A') + 10
		default:
			return &errMalformed{fmt.Errorf("section %s: %q is not hex", o.section, c)}
		}
		if o.nibble < 0 {
			o.nibble = v
			continue
		}
		if len(o.buf) >= o.limit {
			return &errOverflow{fmt.Sprintf("the host sent more than %d MiB for %s, the most a task handles", o.limit>>20, sectionFile(o.section))}
		}
		o.buf = append(o.buf, byte(o.nibble<<4|v))
		o.nibble = -1
	}
	return nil
}

func sectionFile(name string) string {
	if name == "authorized_keys" {
		return "~/.ssh/authorized_keys"
	}
	return "the sshd configuration"
}

// complete fails when a section is still open (the output ended or a marker came inside it).
func (o *scriptOutput) complete() error {
	if o.section != "" {
		return &errMalformed{errors.New("unterminated section " + o.section)}
	}
	return nil
}

// read parses lines from r into o until the line marker outside a section (nil; "" reads
// to the end), a bound passed (*errOverflow), a line the scripts never print (*errMalformed),
// or the end of the output or of the session (the reader's error, io.EOF at the end). What it
// parsed stays in o. A line longer than maxLine is over the bounds: no script prints one.
func (o *scriptOutput) read(r *bufio.Reader, marker string) error {
	for {
		l, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) || len(l) > maxLine {
			return &errOverflow{"the host sent a line longer than a task needs"}
		}
		l = bytes.TrimSuffix(l, []byte("\n"))
		if err == nil && marker != "" && o.section == "" && string(l) == marker {
			return nil
		}
		if len(l) > 0 || err == nil {
			if lerr := o.line(l); lerr != nil {
				return lerr
			}
		}
		if err != nil {
			return err
		}
	}
}

// parseOutput parses a whole output at once.
func parseOutput(out []byte) (sections map[string][]byte, fields map[string]string, err error) {
	o := newScriptOutput()
	for l := range bytes.Lines(out) {
		if err := o.line(bytes.TrimSuffix(l, []byte("\n"))); err != nil {
			return nil, nil, err
		}
	}
	if err := o.complete(); err != nil {
		return nil, nil, err
	}
	return o.sections, o.fields, nil
}
