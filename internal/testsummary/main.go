package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string
	Test       string
	Output     string
}

// summary is what the events said so far.
type summary struct {
	out    io.Writer
	output map[string][]string // per package and test: its output lines
	skips  []string
	failed bool
}

func (s *summary) add(e event) {
	key := e.Package + " " + e.Test
	switch e.Action {
	case "build-output":
		fmt.Fprint(s.out, e.Output)
	case "build-fail":
		s.failed = true
	case "output":
		if e.Test == "" {
			if e.Output != "PASS\n" && !strings.HasPrefix(e.Output, "=== ") {
				fmt.Fprint(s.out, e.Output)
			}
			return
		}
		if !strings.HasPrefix(e.Output, "=== ") {
			s.output[key] = append(s.output[key], e.Output)
		}
	case "fail":
		s.failed = true
		if e.Test != "" {
			for _, l := range s.output[key] {
				fmt.Fprint(s.out, l)
			}
		}
		delete(s.output, key)
	case "skip":
		if e.Test != "" {
			s.skips = append(s.skips, fmt.Sprintf("%s %s: %s", e.Package, e.Test, reason(s.output[key])))
		}
		delete(s.output, key)
	case "pass":
		delete(s.output, key)
	}
}

// reason is what a skipped test logged: its indented lines, joined.
func reason(lines []string) string {
	var r []string
	for _, l := range lines {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "--- SKIP") {
			r = append(r, t)
		}
	}
	if len(r) == 0 {
		return "(no reason given)"
	}
	return strings.Join(r, " | ")
}

func run(in io.Reader, out io.Writer) (*summary, error) {
	s := &summary{out: out, output: map[string][]string{}}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// go test prints some errors (a package that does not
			// build, in older toolchains) as plain text.
			fmt.Fprintln(out, sc.Text())
			continue
		}
		s.add(e)
	}
	return s, sc.Err()
}

func main() {
	skips := flag.String("skips", "", "append one line per skipped test to this `file`")
	flag.Parse()
	s, err := run(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testsummary: read: %v\n", err)
		os.Exit(2)
	}
	if *skips != "" && len(s.skips) > 0 {
		f, err := os.OpenFile(*skips, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			_, err = fmt.Fprint(f, strings.Join(s.skips, "\n")+"\n")
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "testsummary: skips: %v\n", err)
			os.Exit(2)
		}
	}
	if s.failed {
		os.Exit(1)
	}
}
