//go:build linux

package integration

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestSSHSessionSurvivesRepairs: under `seqknockd run`, a real OpenSSH
// session through `seqknock proxy` survives every way the table is removed
// or changed by someone else, and conntrack -F; after each, the daemon has
// repaired the table and a plain connect is refused.
func TestSSHSessionSurvivesRepairs(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 130, 10*time.Second)
	w.startDaemon()
	s := w.openSession()
	nftFile := w.path("nftables.conf")
	os.WriteFile(nftFile, []byte("flush ruleset\ntable inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n"), 0o600)
	for i, ev := range [][]string{
		{"nft", "flush", "ruleset"},
		{"nft", "delete", "table", "inet", "seqknock"},
		{"nft", "flush", "set", "inet", "seqknock", "valid"},
		{"nft", "-f", nftFile},
		{"nft", "insert", "rule", "inet", "seqknock", "knock", "tcp", "dport", "22", "accept"},
		{"conntrack", "-F"},
	} {
		name := strings.Join(ev, " ")
		if out, err := w.srv.Run(ev[0], ev[1:]...); err != nil {
			t.Fatalf("%s: %v: %s", name, err, out)
		}
		if ev[0] == "nft" {
			w.waitLog("why=repair", i+1)
		}
		s.check(t, "after "+name)
		if err := plainConnect(w.cli, w.cl.A4, 700*time.Millisecond); err == nil {
			t.Fatalf("after %s: a plain connect got through", name)
		}
	}
}
