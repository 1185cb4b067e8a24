//go:build linux

package client

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// TestSetcapDialSealed: while a cap_net_admin+ep copy of seqknock, run by
// a user, dials (its socket made inside it, the SYN unanswered), the user
// takes none of its descriptors with pidfd_getfd and cannot trace it, so
// a socket of it in repair mode (stopped there by the user) is out of the
// user's reach. The same probe takes the descriptors of a plain process
// of the user, and traces it.
func TestSetcapDialSealed(t *testing.T) {
	netnstest.RequireRoot(t, "setpriv", "setcap", "ip")
	// The server drops the SYN (no knock of testKey is allowed): the dial
	// waits its syn timeout.
	h := newKnockHost(t, 168)
	ns := h.client
	attack := netnstest.Build(t, "client/testdata/repairattack")
	u := netnstest.NewUser(t)
	kf := u.WriteFile(".config/seqknock/own.key", keyText(testKey), 0o600)
	for _, build := range builds {
		t.Run(build.name, func(t *testing.T) {
			capBin := netnstest.SetcapCopy(t, build.build(t, "client/cmd/seqknock"))
			probe := func(what string, cmd *exec.Cmd, ready func() bool) string {
				t.Helper()
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				defer func() { cmd.Process.Kill(); cmd.Wait() }()
				for deadline := time.Now().Add(5 * time.Second); !ready(); time.Sleep(20 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("%s did not get ready", what)
					}
				}
				// ip netns exec and setpriv exec the program in the same
				// process.
				out, err := u.Command(ns, attack, "getfd", strconv.Itoa(cmd.Process.Pid)).CombinedOutput()
				if err != nil {
					t.Fatalf("getfd %s: %v: %s", what, err, out)
				}
				return strings.TrimSpace(string(out))
			}
			dial := u.Command(ns, capBin, "proxy", "--key-file", kf, "--syn-timeout", "10s", h.link.A4, strconv.Itoa(int(h.port)))
			dial.Stdin = strings.NewReader("")
			got := probe("the setcap dial", dial, func() bool { return tcpConnecting(dial.Process.Pid) })
			if got != "taken=0 sockets=0 traced=false" {
				t.Errorf("the setcap dial: %s, want taken=0 sockets=0 traced=false", got)
			}
			var served netnstest.Buffer
			plain := u.Command(ns, attack, "serve", "0")
			plain.Stdout = &served
			got = probe("a plain process", plain, func() bool { return served.String() == "serving\n" })
			var taken, sockets int
			var traced bool
			if _, err := fmt.Sscanf(got, "taken=%d sockets=%d traced=%t", &taken, &sockets, &traced); err != nil || sockets == 0 || !traced {
				t.Errorf("the probe on a plain process of the user: %q, want its socket taken and it traced", got)
			}
		})
	}
}

// tcpConnecting says whether process pid holds a TCP socket whose SYN is
// out (SYN_SENT in its network namespace's /proc/PID/net/tcp).
func tcpConnecting(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n")[1:] {
		if f := strings.Fields(l); len(f) > 3 && f[3] == "02" {
			return true
		}
	}
	return false
}
