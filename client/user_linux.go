//go:build linux

package client

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Invoker is the user seqknock acts for: under sudo the user who ran sudo,
// in a set-user-ID run the real user, otherwise the process's own user.
type Invoker struct {
	UID, GID int
	Groups   []int // for Become: set for an elevated invoker only
	// Name is the user's name; for a process acting for itself (not
	// Elevated) it is left empty when $HOME is set.
	Name string
	Home string
	// Elevated says the process holds another user's rights (root under
	// sudo, a set-user-ID run, or root with --user) for this one: it must
	// become this user (Become) before it reads a single file.
	Elevated bool
	// Via says how the process came to be elevated, for messages: "sudo",
	// "set-user-ID" or "--user".
	Via string
}

// ErrUserNeedsRoot is returned for --user by anyone but root.
var ErrUserNeedsRoot = errors.New("--user is for root only: a user running seqknock under sudo acts as themself")

// CurrentInvoker returns the user the process acts for, from its
// credentials alone:
//   - real and effective user (or group) differ: a set-user-ID run for the
//     real user;
//   - real user root and SUDO_UID set to another uid: sudo, for that user
//     (only root could have set SUDO_UID in the environment of a process
//     whose real user is root);
//   - otherwise the process's own user, not elevated.
func CurrentInvoker() (*Invoker, error) {
	ruid, euid := os.Getuid(), os.Geteuid()
	rgid, egid := os.Getgid(), os.Getegid()
	switch {
	case ruid != euid || rgid != egid:
		inv, err := lookupInvoker(strconv.Itoa(ruid))
		if err != nil {
			return nil, err
		}
		inv.GID = rgid
		if gs, err := syscall.Getgroups(); err == nil {
			inv.Groups = gs
		}
		inv.Elevated, inv.Via = true, "set-user-ID"
		return inv, nil
	case ruid == 0 && os.Getenv("SUDO_UID") != "" && os.Getenv("SUDO_UID") != "0":
		s := os.Getenv("SUDO_UID")
		if _, err := strconv.ParseUint(s, 10, 32); err != nil {
			return nil, fmt.Errorf("SUDO_UID %q: not a uid", s)
		}
		inv, err := lookupInvoker(s)
		if err != nil {
			return nil, err
		}
		if g, err := strconv.ParseUint(os.Getenv("SUDO_GID"), 10, 32); err == nil {
			inv.GID = int(g)
		}
		inv.Elevated, inv.Via = true, "sudo"
		return inv, nil
	}
	// Acting for itself, the process needs its user's name for nothing
	// (only Become and messages about an elevated run use it): the user
	// database is read only when $HOME does not give the home, which
	// spares every start of seqknock proxy a parse of /etc/passwd (or an
	// NSS lookup).
	inv := &Invoker{UID: ruid, GID: rgid, Home: os.Getenv("HOME")}
	if inv.Home == "" {
		if u, err := user.LookupId(strconv.Itoa(ruid)); err == nil {
			inv.Name, inv.Home = u.Username, u.HomeDir
		}
	}
	return inv, nil
}

// lookupInvoker reads a user's entry (uid or name) from the user database.
func lookupInvoker(name string) (*Invoker, error) {
	u, err := user.LookupId(name)
	if err != nil {
		u, err = user.Lookup(name)
	}
	if err != nil {
		return nil, fmt.Errorf("user %s: %w", name, err)
	}
	inv := &Invoker{Name: u.Username, Home: u.HomeDir}
	inv.UID, _ = strconv.Atoi(u.Uid)
	inv.GID, _ = strconv.Atoi(u.Gid)
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.Atoi(g); err == nil {
				inv.Groups = append(inv.Groups, n)
			}
		}
	}
	if len(inv.Groups) == 0 {
		inv.Groups = []int{inv.GID}
	}
	return inv, nil
}

// ForUser returns the invoker for --user name. Only root acting for itself
// may name another user; anyone may name themself (a no-op, which is also
// what the process Become starts sees).
func (inv *Invoker) ForUser(name string) (*Invoker, error) {
	if name == "" {
		return inv, nil
	}
	target, err := lookupInvoker(name)
	if err != nil {
		return nil, err
	}
	if !inv.Elevated && target.UID == inv.UID {
		return inv, nil
	}
	if inv.Elevated || inv.UID != 0 || os.Geteuid() != 0 {
		if inv.Elevated {
			return nil, fmt.Errorf("%w (refused under %s for uid %d)", ErrUserNeedsRoot, inv.Via, inv.UID)
		}
		return nil, ErrUserNeedsRoot
	}
	target.Elevated, target.Via = true, "--user"
	return target, nil
}

// LoadConfig loads the client config file, or with file "" the invoking
// user's $XDG_CONFIG_HOME/seqknock/client.toml (or ~/.config/...), which
// may be missing (flags alone suffice). Under sudo the process has become
// that user, environment scrubbed, before it gets here (Become).
func (inv *Invoker) LoadConfig(file string) (*Config, error) {
	if file != "" {
		return LoadConfig(file, inv.Home, false)
	}
	dir := filepath.Join(inv.Home, ".config")
	if d := os.Getenv("XDG_CONFIG_HOME"); filepath.IsAbs(d) {
		dir = d
	}
	return LoadConfig(filepath.Join(dir, "seqknock", "client.toml"), inv.Home, true)
}

// SlotStore returns the invoking user's slot store:
// $XDG_STATE_HOME/seqknock or ~/.local/state/seqknock.
func (inv *Invoker) SlotStore() *SlotStore {
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return &SlotStore{Base: d, Sub: []string{"seqknock"}}
	}
	return &SlotStore{Base: inv.Home, Sub: []string{".local", "state", "seqknock"}}
}

// DropPrivileges gives up every capability once conn is connected, on
// every thread (one capset through syscall.AllThreadsSyscall; a cgo build
// hands conn to a fresh image instead, HandOver, and does not return).
// Root acting for itself, or a process that holds nothing, has nothing to
// drop.
func DropPrivileges(conn *net.TCPConn) error {
	if os.Geteuid() == 0 && os.Getuid() == 0 {
		return nil
	}
	held, err := hasCapabilities()
	if err != nil || !held {
		return err
	}
	// Threads lose the capability one after another: see GuardCapabilities.
	if err := GuardCapabilities(); err != nil {
		return err
	}
	if builtWithCgo {
		return HandOver(conn, os.Args)
	}
	// Heap objects do not move, so their addresses stay valid through the
	// call; KeepAlive holds them until it returns.
	hdr := &unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := new([2]unix.CapUserData)
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	runtime.KeepAlive(hdr)
	runtime.KeepAlive(data)
	if errno != 0 {
		return fmt.Errorf("drop privileges: capset: %w", errno)
	}
	if held, err := hasCapabilities(); err != nil || held {
		return fmt.Errorf("drop privileges: capabilities remain after capset (%v)", err)
	}
	return nil
}

// GuardCapabilities makes a process that holds a capability, and is not
// root, non-dumpable (PR_SET_DUMPABLE 0): then its user can trace no
// thread of it, nor open its /proc/PID files, and it leaves no core file.
// The image Become starts is dumpable, and while DropPrivileges clears one
// thread after another a cleared thread could otherwise be traced and the
// memory it shares with the others written (the package doc has more).
func GuardCapabilities() error {
	if os.Geteuid() == 0 && os.Getuid() == 0 {
		return nil
	}
	held, err := hasCapabilities()
	if err != nil || !held {
		return err
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("guard capabilities: set non-dumpable: %w", err)
	}
	return nil
}

// hasCapabilities reports whether the calling thread holds any capability
// in its permitted, effective or inheritable set (the ambient set is a
// subset of permitted and inheritable).
func hasCapabilities() (bool, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, fmt.Errorf("capget: %w", err)
	}
	for _, d := range data {
		if d.Permitted != 0 || d.Effective != 0 || d.Inheritable != 0 {
			return true, nil
		}
	}
	return false, nil
}

// ErrFileCapabilityBroker refuses a mode that would serve someone else's
// socket with a capability the binary's file gave its user.
var ErrFileCapabilityBroker = errors.New("refused with a file capability (setcap) for a user who is not root: " +
	"its user could stop it in the middle of a request; run the broker as the system service (systemctl enable --now seqknock-broker.socket)")

// CheckNotFileCapability returns ErrFileCapabilityBroker when this process
// gained its capabilities from its own file at execve (a setcap copy run
// by a user who is not root): its real uid is not 0, it holds a
// capability, CAP_NET_ADMIN is not in its ambient set (where systemd's
// AmbientCapabilities, and Become, put it) and no_new_privs is off (with
// it on, execve grants no capability the process did not hold before, so
// what it holds came from its parent: systemd's unit sets
// NoNewPrivileges=yes). Such a process runs as its user, who may stop or
// kill it at any moment: it may set the ISN only of sockets it made.
func CheckNotFileCapability() error {
	if os.Getuid() == 0 {
		return nil
	}
	held, err := hasCapabilities()
	if err != nil {
		return fmt.Errorf("capability check: %w", err)
	}
	if !held {
		return nil
	}
	if nnp, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); err != nil || nnp == 1 {
		if err != nil {
			return fmt.Errorf("capability check: no_new_privs: %w", err)
		}
		return nil
	}
	if amb, err := unix.PrctlRetInt(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_IS_SET, unix.CAP_NET_ADMIN, 0, 0); err != nil || amb == 1 {
		if err != nil {
			return fmt.Errorf("capability check: ambient set: %w", err)
		}
		return nil
	}
	return ErrFileCapabilityBroker
}
