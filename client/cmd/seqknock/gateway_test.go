package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGatewayCheck: gateway --check loads the gateway config, the client
// config and each destination's key, prints the destinations and installs
// nothing; a destination without a key, a key others may read and a bad
// config are each one line naming the file.
func TestGatewayCheck(t *testing.T) {
	dir := t.TempDir()
	key := writeKey(t, []byte("gateway-check-key-0123456789abcdef"))
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("client.toml", "[[host]]\nmatch = \"srv\"\nkey_file = \""+key+"\"\n", 0o600)
	gw := write("gateway.toml", "[[destination]]\naddress = \"198.18.1.1\"\nport = 22\nhost = \"srv\"\nallow = [\"198.18.2.0/24\"]\n", 0o600)
	out, e, code := runCLI(t, "gateway", "--config", gw, "--check")
	if code != 0 || !strings.Contains(out, `198.18.1.1:22 host "srv" allow [198.18.2.0/24]`) {
		t.Fatalf("--check: exit %d, stdout %q, stderr %q", code, out, e)
	}
	for name, tc := range map[string]struct{ gateway, client, want string }{
		"no key": {"[[destination]]\naddress = \"198.18.1.1\"\nport = 22\nhost = \"other\"\nallow = [\"198.18.2.1\"]\n",
			"[[host]]\nmatch = \"srv\"\nkey_file = \"" + key + "\"\n", "destination[0] 198.18.1.1:22: no [[host]]"},
		"bad config":        {"[[destination]]\naddress = \"198.18.1.1\"\nport = 22\n", "", "gateway.toml:1: destination[0].allow"},
		"bad client config": {"[[destination]]\naddress = \"198.18.1.1\"\nport = 22\nallow = [\"198.18.2.1\"]\n", "[[host]]\n", "client.toml:1: host[0].match"},
	} {
		gw := write("gateway.toml", tc.gateway, 0o600)
		write("client.toml", tc.client, 0o600)
		out, e, code := runCLI(t, "gateway", "--config", gw, "--check")
		if code == 0 || out != "" || !strings.Contains(e, tc.want) || strings.Count(e, "\n") != 1 {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want one line with %q", name, code, out, e, tc.want)
		}
	}
	os.Chmod(key, 0o644)
	write("client.toml", "[[host]]\nmatch = \"srv\"\nkey_file = \""+key+"\"\n", 0o600)
	gw = write("gateway.toml", "[[destination]]\naddress = \"198.18.1.1\"\nport = 22\nhost = \"srv\"\nallow = [\"198.18.2.1\"]\n", 0o600)
	if _, e, code := runCLI(t, "gateway", "--config", gw, "--check"); code == 0 || !strings.Contains(e, key) {
		t.Errorf("a key others may read: exit %d, stderr %q", code, e)
	}
}
