package tomlerr

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/BurntSushi/toml"
)

// Error is a config mistake: the file, the line (0 when unknown) and the
// field it is in ("" when none).
type Error struct {
	File  string
	Line  int
	Field string
	Err   error
}

// oneLine escapes line breaks: the decoder quotes the offending text in
// some messages, and that text may hold one.
var oneLine = strings.NewReplacer("\n", `\n`, "\r", `\r`)

// Error is always one line.
func (e *Error) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Field != "" {
		loc += ": " + e.Field
	}
	return oneLine.Replace(fmt.Sprintf("config %s: %v", loc, e.Err))
}

func (e *Error) Unwrap() error { return e.Err }

// Doc is the text of one config file, for decoding it and for naming the
// line of a mistake.
type Doc struct {
	File   string
	data   []byte
	lines  []string         // the text's lines, split at the first Line
	spans  []span           // the sections, found at the first Line
	byName map[string][]int // their indices in spans, by name
}

// New returns the Doc of file, whose text is data; data must not change
// after. The text is split into lines only when a line is asked for (a
// mistake to place): a config of 50,000 users is 3 MB of text, and its
// lines held 6.5 MB more of the heap while the decoder built its tree.
func New(file string, data []byte) *Doc {
	return &Doc{File: file, data: data}
}

// typeErr is how the TOML decoder words a value of the wrong type,
// compiled on first use: a program that never meets such an error (every
// start of seqknock proxy) does not pay for it at start-up.
var typeErr = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]+)"\): (.*)$`)
})

// Decode decodes the text into v. A syntax error, a value of the wrong type
// and a key v has no field for are each an *Error with the line.
func (d *Doc) Decode(v any) error {
	// The decoder reads the text into a string of its own: read from a
	// bytes.Reader, it is not copied once more first.
	md, err := toml.NewDecoder(bytes.NewReader(d.data)).Decode(v)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			msg := pe.Message
			if msg == "" {
				msg = strings.SplitN(pe.Error(), "\n", 2)[0]
			}
			return &Error{File: d.File, Line: pe.Position.Line, Err: errors.New(msg)}
		}
		if m := typeErr().FindStringSubmatch(err.Error()); m != nil {
			line, _ := strconv.Atoi(m[1])
			return &Error{File: d.File, Line: line, Field: m[2], Err: errors.New(m[3])}
		}
		return &Error{File: d.File, Err: err}
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		section, key := "", k[len(k)-1]
		if len(k) > 1 {
			section = k[0]
		}
		return d.At(section, -1, key, k.String(), errors.New("unknown key"))
	}
	return nil
}

// At returns the error err in field, placed at the line Line finds.
func (d *Doc) At(section string, idx int, key, field string, err error) *Error {
	return &Error{File: d.File, Line: d.Line(section, idx, key), Field: field, Err: err}
}

// Line returns the 1-based line that sets key in the idx-th [section] or
// [[section]] (idx -1: in any of them; section "": at top level). When key
// is "" or not found it returns the line of that section's header, or 0.
func (d *Doc) Line(section string, idx int, key string) int {
	if d.spans == nil {
		d.index()
	}
	spans := d.byName[section]
	if section != "" && idx >= 0 {
		// The idx-th header named section (the top level is no header).
		if len(spans) > 0 && d.spans[spans[0]].header == 0 {
			spans = spans[1:]
		}
		if idx >= len(spans) {
			return 0
		}
		spans = spans[idx : idx+1]
	}
	for _, j := range spans {
		sp := d.spans[j]
		if key != "" {
			for i := sp.header; i < sp.end; i++ {
				k, _, ok := strings.Cut(strings.TrimSpace(d.lines[i]), "=")
				if ok && strings.Trim(strings.TrimSpace(k), `"'`) == key {
					return i + 1
				}
			}
		}
		if section != "" && idx >= 0 {
			return sp.header // the key is not in this section
		}
	}
	return 0
}

// span is one section of the document: its name, the 1-based line of its
// header (0 for the top level) and the end of its lines (exclusive,
// 0-based).
type span struct {
	name        string
	header, end int
}

// index splits the text into lines and finds the sections, once, at the
// first Line: each Line then costs the lines of one section, not of the
// whole file. Only mistakes ask for lines, so a config without one never
// comes here.
func (d *Doc) index() {
	d.lines = strings.Split(string(d.data), "\n")
	d.spans = []span{{name: ""}}
	for i, raw := range d.lines {
		s := strings.TrimSpace(raw)
		if !strings.HasPrefix(s, "[") {
			continue
		}
		name := strings.Trim(s, "[] \t")
		if j := strings.Index(name, "]"); j >= 0 {
			name = name[:j]
		}
		d.spans[len(d.spans)-1].end = i
		d.spans = append(d.spans, span{name: strings.TrimSpace(name), header: i + 1})
	}
	d.spans[len(d.spans)-1].end = len(d.lines)
	d.byName = map[string][]int{}
	for i, sp := range d.spans {
		d.byName[sp.name] = append(d.byName[sp.name], i)
	}
}
