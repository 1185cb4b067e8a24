//go:build linux

package integration

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestBindSourcePortThroughNAT: with bind_source_port on the server's
// service, ssh through seqknock --bind-source-port works from a client
// whose source ports reach the server unchanged, and fails from behind a
// masquerade that picks random source ports, with a message that names
// bind_source_port and the NAT as the likely cause (not a bare timeout).
func TestBindSourcePortThroughNAT(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 248, 2*time.Second)
	cfg := strings.Replace(mustRead(t, w.path("seqknockd.toml")), "port = 22\n", "port = 22\nbind_source_port = true\n", 1)
	if err := os.WriteFile(w.path("seqknockd.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	_, natcli, up, _ := w.behindRouter("bprt", "bpcl", 251, 252, true)
	w.startDaemon()

	// Each dial keeps its slots in a state directory of its own: they
	// share key, realm and port, and a dial that finds this period's
	// slots spent by the one before would say only that.
	proxy := func(state string, flags ...string) string {
		return "env XDG_STATE_HOME=" + w.path(state) + " " + w.proxyCmd("proxy", flags...)
	}
	// Direct: the source port arrives as the client bound it.
	out, err := w.sshRun(proxy("st-bound", "--bind-source-port"), false, w.cl.A4, "echo", "bound")
	if err != nil || strings.TrimSpace(out) != "bound" {
		t.Fatalf("ssh with --bind-source-port: %v: %s", err, out)
	}
	// Without binding, the server's 48-bit knocks are not met.
	if out, err := w.sshRun(proxy("st-unbound"), false, w.cl.A4, "echo", "unbound"); err == nil || !strings.Contains(out, "realm, port or bind_source_port differ from the server's") {
		t.Fatalf("ssh without --bind-source-port: %v, want refused with the hint:\n%s", err, out)
	}
	// Through the random-port masquerade: refused, and the client says why.
	w.sshFrom = natcli
	out, err = w.sshRun(proxy("st-nat", "--bind-source-port"), false, up.A4, "echo", "via-nat")
	if err == nil {
		t.Fatalf("ssh through a port-rewriting NAT got in: %s", out)
	}
	for _, want := range []string{"no SYN-ACK from " + up.A4 + ":22", "bind_source_port is on", "NAT", "rewrites source ports"} {
		if !strings.Contains(out, want) {
			t.Errorf("the client's message lacks %q:\n%s", want, out)
		}
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
