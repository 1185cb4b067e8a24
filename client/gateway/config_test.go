package gateway

import (
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/seqknock/seqknock/internal/cliconv/clitest"
)

const goodConfig = `listen_port = 7100
[[destination]]
address = "198.18.1.1"
port = 22
host = "prod"
allow = ["198.18.2.0/24", "198.18.3.4"]
[[destination]]
address = "2001:db8:1::1"
port = 443
allow = ["2001:db8:2::/64"]
`

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig("/etc/seqknock/gateway.toml", []byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.ClientConfig != "/etc/seqknock/client.toml" || c.ListenPort != 7100 || c.Table != DefaultTable || len(c.Dests) != 2 {
		t.Fatalf("config: %+v", c)
	}
	d := c.Lookup(netip.MustParseAddrPort("198.18.1.1:22"))
	if d == nil || d.Host != "prod" {
		t.Fatalf("lookup 198.18.1.1:22: %+v", d)
	}
	if c.Lookup(netip.MustParseAddrPort("198.18.1.1:23")) != nil || c.Lookup(netip.MustParseAddrPort("198.18.1.2:22")) != nil {
		t.Error("lookup matched another port or address")
	}
	if c.Lookup(netip.MustParseAddrPort("[::ffff:198.18.1.1]:22")) != d {
		t.Error("an IPv4-mapped destination is not the IPv4 one")
	}
	for src, want := range map[string]bool{"198.18.2.9": true, "198.18.3.4": true, "198.18.3.5": false, "198.18.4.1": false, "::ffff:198.18.2.1": true} {
		if got := d.Allowed(netip.MustParseAddr(src)); got != want {
			t.Errorf("allowed %s: %v, want %v", src, got, want)
		}
	}
	if c.Dests[1].Allowed(netip.MustParseAddr("2001:db8:3::1")) || !c.Dests[1].Allowed(netip.MustParseAddr("2001:db8:2::9")) {
		t.Error("IPv6 allow list")
	}
}

// TestParseConfigErrors: each mistake is one line naming the file, the
// line and the field.
func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"", "destination"},
		{"listen_port = 0\n[[destination]]\naddress = \"198.18.1.1\"\nport = 22\nallow = [\"198.18.2.1\"]\n", "gw.toml:1: listen_port"},
		{"table = \"a b\"\n", "gw.toml:1: table"},
		{"[[destination]]\nport = 22\nallow = [\"198.18.2.1\"]\n", "destination[0].address: missing"},
		{"[[destination]]\naddress = \"example.org\"\nport = 22\nallow = [\"198.18.2.1\"]\n", "gw.toml:2: destination[0].address"},
		{"[[destination]]\naddress = \"198.18.1.1\"\nallow = [\"198.18.2.1\"]\n", "destination[0].port: missing"},
		{"[[destination]]\naddress = \"198.18.1.1\"\nport = 70000\nallow = [\"198.18.2.1\"]\n", "gw.toml:3: destination[0].port"},
		{"[[destination]]\naddress = \"198.18.1.1\"\nport = 22\n", "destination[0].allow: missing or empty"},
		{"[[destination]]\naddress = \"198.18.1.1\"\nport = 22\nallow = []\n", "destination[0].allow: missing or empty"},
		{"[[destination]]\naddress = \"198.18.1.1\"\nport = 22\nallow = [\"198.18.2.1/16\"]\n", "gw.toml:4: destination[0].allow[0]: \"198.18.2.1/16\": host bits set"},
		{"[[destination]]\naddress = \"198.18.1.1\"\nport = 22\nallow = [\"2001:db8::/32\"]\n", "not of 198.18.1.1's family"},
		{"[[destination]]\naddress = \"198.18.1.1\"\nport = 22\nallow = [\"nope\"]\n", "destination[0].allow[0]"},
		{"[[destination]]\naddress = \"198.18.1.1\"\nport = 22\nallow = [\"198.18.2.1\"]\n[[destination]]\naddress = \"198.18.1.1\"\nport = 22\nallow = [\"198.18.2.1\"]\n", "also destination[0]"},
		{"[[destination]]\naddress = \"198.18.1.1\"\nport = 22\nallow = [\"198.18.2.1\"]\nbogus = 1\n", "bogus"},
		{"[[destination]]\naddress = \"127.0.0.1\"\nport = 22\nallow = [\"127.0.0.1\"]\n", "unicast address of a server"},
	} {
		_, err := ParseConfig("gw.toml", []byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "config gw.toml:") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: got %v, want one line with %q", tc.text, err, tc.want)
		}
	}
}

// TestManPageNamesEveryGatewayKey: seqknock(1)'s GATEWAY section names
// every key of the gateway config in bold.
func TestManPageNamesEveryGatewayKey(t *testing.T) {
	clitest.CheckConfigKeys(t, filepath.Join("..", "..", "man", "seqknock.1"), "GATEWAY", reflect.TypeOf(rawConfig{}), 7)
}
