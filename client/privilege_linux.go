//go:build linux

package client

import (
	"fmt"
	"github.com/seqknock/seqknock/internal/covhook"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// keptEnv are the variables Become passes on; every other one (LD_*, GO*,
// XDG_*, SUDO_*, ...) is dropped, since the new image may hold
// CAP_NET_ADMIN and must not be steered by its caller's environment.
var keptEnv = []string{"PATH", "TERM", "COLORTERM", "LANG", "LANGUAGE", "TZ", "DISPLAY"}

// BecomeEnv returns the environment Become gives the new image: the kept
// variables of env, and HOME, USER and LOGNAME of inv from the user
// database.
func BecomeEnv(env []string, inv *Invoker) []string {
	out := []string{"HOME=" + inv.Home}
	if inv.Name != "" {
		out = append(out, "USER="+inv.Name, "LOGNAME="+inv.Name)
	}
	havePath := false
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "LC_") || slices.Contains(keptEnv, k) {
			out = append(out, kv)
			havePath = havePath || k == "PATH"
		}
	}
	if !havePath {
		out = append(out, "PATH=/usr/local/bin:/usr/bin:/bin")
	}
	return out
}

// Become turns an elevated process into inv, keeping at most CAP_NET_ADMIN
// (when netAdmin, in the ambient set), and starts this same binary afresh
// (execve of /proc/self/exe with args and BecomeEnv's environment) in that
// state, as the package doc says. The Go runtime (and glibc in cgo builds)
// applies setgroups, setresgid and setresuid to every thread. It returns
// only on error.
func Become(inv *Invoker, netAdmin bool, args []string) error {
	if !inv.Elevated {
		return nil
	}
	env := BecomeEnv(os.Environ(), inv)
	// Never unlocked: this thread either execs or the process exits.
	runtime.LockOSThread()
	if netAdmin {
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("become %s: keepcaps: %w", inv.describe(), err)
		}
	}
	groups := inv.Groups
	if len(groups) == 0 {
		groups = []int{inv.GID}
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("become %s: setgroups: %w", inv.describe(), err)
	}
	if err := syscall.Setresgid(inv.GID, inv.GID, inv.GID); err != nil {
		return fmt.Errorf("become %s: setresgid: %w", inv.describe(), err)
	}
	if err := syscall.Setresuid(inv.UID, inv.UID, inv.UID); err != nil {
		return fmt.Errorf("become %s: setresuid: %w", inv.describe(), err)
	}
	if netAdmin {
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		bit := uint32(1) << unix.CAP_NET_ADMIN
		data[0] = unix.CapUserData{Effective: bit, Permitted: bit, Inheritable: bit}
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			return fmt.Errorf("become %s: keep CAP_NET_ADMIN: %w", inv.describe(), err)
		}
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, unix.CAP_NET_ADMIN, 0, 0); err != nil {
			return fmt.Errorf("become %s: ambient CAP_NET_ADMIN: %w", inv.describe(), err)
		}
	}
	covhook.Flush() // a coverage build's counters; nothing otherwise
	err := syscall.Exec("/proc/self/exe", args, env)
	return fmt.Errorf("become %s: exec: %w", inv.describe(), err)
}

func (inv *Invoker) describe() string {
	if inv.Name != "" {
		return fmt.Sprintf("%s (uid %d)", inv.Name, inv.UID)
	}
	return fmt.Sprintf("uid %d", inv.UID)
}
