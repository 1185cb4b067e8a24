package server

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// exampleRange is a range "(LO..HI)" in a comment of the example config and
// the key set on the first line after the comment.
type exampleRange struct {
	key    string
	lo, hi int
	line   int
}

var (
	rangeRE  = regexp.MustCompile(`\((-?\d+)\.\.(-?\d+)\)`)
	assignRE = regexp.MustCompile(`^([a-z_0-9]+)\s*=`)
)

// exampleRanges reads every range stated in the comments of a config and
// the key each belongs to.
func exampleRanges(t *testing.T, text string) []exampleRange {
	t.Helper()
	var found, pending []exampleRange
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "#"):
			for _, m := range rangeRE.FindAllStringSubmatch(trimmed, -1) {
				lo, _ := strconv.Atoi(m[1])
				hi, _ := strconv.Atoi(m[2])
				pending = append(pending, exampleRange{lo: lo, hi: hi, line: i + 1})
			}
		case trimmed == "":
			if len(pending) > 0 {
				t.Errorf("example:%d: a range in a comment that no key follows", pending[0].line)
			}
			pending = nil
		default:
			m := assignRE.FindStringSubmatch(trimmed)
			for _, r := range pending {
				if m == nil {
					t.Errorf("example:%d: a range in a comment above %q, not a key", r.line, trimmed)
					continue
				}
				r.key = m[1]
				found = append(found, r)
			}
			pending = nil
		}
	}
	return found
}

// TestExampleConfigRanges: every range the example config's comments state
// is the one the config parser enforces: both ends load, one past each
// end is refused with the key's name.
func TestExampleConfigRanges(t *testing.T) {
	path := filepath.Join("..", "scripts", "seqknockd.toml.example")
	example, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ranges := exampleRanges(t, string(example))
	keys := map[string]bool{}
	for _, r := range ranges {
		keys[r.key] = true
	}
	// The ones the example states today; a lost one is a lost check.
	for _, k := range []string{"tolerance", "slots", "ct_mark_bit", "log_group"} {
		if !keys[k] {
			t.Errorf("no range found for %s in %s", k, path)
		}
	}
	// The example itself loads (its key file comes from fakeKeys).
	if _, err := ParseConfig("/etc/seqknock/seqknockd.toml", example, fakeKeys); err != nil {
		t.Fatalf("the example does not load: %v", err)
	}
	const rest = "[[service]]\nport = 22\n[[user]]\nname = \"a\"\nkey_file = \"k\"\n"
	for _, r := range ranges {
		for _, tc := range []struct {
			v  int
			ok bool
		}{{r.lo, true}, {r.hi, true}, {r.lo - 1, false}, {r.hi + 1, false}} {
			config := fmt.Sprintf("%s = %d\n%s", r.key, tc.v, rest)
			_, err := ParseConfig("x.toml", []byte(config), fakeKeys)
			switch {
			case tc.ok && err != nil:
				t.Errorf("example:%d says %s (%d..%d), but %s = %d is refused: %v", r.line, r.key, r.lo, r.hi, r.key, tc.v, err)
			case !tc.ok && err == nil:
				t.Errorf("example:%d says %s (%d..%d), but %s = %d loads", r.line, r.key, r.lo, r.hi, r.key, tc.v)
			case !tc.ok && !strings.Contains(err.Error(), r.key+": "):
				t.Errorf("%s = %d: error names no key: %v", r.key, tc.v, err)
			}
		}
	}
}
