package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

func TestCLIUsageAndDocs(t *testing.T) {
	var o, e bytes.Buffer
	if code := run([]string{"seqknockd", "man"}, &o, &e); code != 0 || !strings.HasPrefix(o.String(), ".nh\n.TH seqknockd 8") {
		t.Errorf("man: exit %d %.100q", code, o.String())
	}
	o.Reset()
	// urfave/cli's completion reads os.Args itself, not Run's arguments.
	args := []string{"seqknockd", "--generate-bash-completion"}
	defer func(saved []string) { os.Args = saved }(os.Args)
	os.Args = args
	if code := run(args, &o, &e); code != 0 {
		t.Errorf("completion exit %d", code)
	}
	for _, c := range []string{"sync", "run", "status", "ruleset", "teardown", "check-config"} {
		if !strings.Contains(o.String(), c+"\n") {
			t.Errorf("completion lacks %s: %q", c, o.String())
		}
	}
	e.Reset()
	if code := run([]string{"seqknockd", "sync", "extra"}, &o, &e); code != 2 || !strings.Contains(e.String(), `sync: unexpected argument "extra"`) {
		t.Errorf("bad usage: exit %d %q", code, e.String())
	}
	e.Reset()
	if code := run([]string{"seqknockd", "--config", "/nonexistent.toml", "check-config"}, &o, &e); code != 1 ||
		e.String() != "seqknockd: config /nonexistent.toml: open /nonexistent.toml: no such file or directory\n" {
		t.Errorf("missing config: exit %d %q", code, e.String())
	}
}
