//go:build linux

package client

import (
	"errors"
	"fmt"
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
// otherwise the process's own user.
type Invoker struct {
	UID, GID int
	Groups   []int
	Home     string
	// Elevated says the process runs as root for another user (sudo), so
	// it must switch to Invoker before it runs anything of the user's.
	Elevated bool
}

// CurrentInvoker returns the invoking user. name, when set (--user), names
// the user to act for instead of SUDO_UID/SUDO_GID.
func CurrentInvoker(name string) (*Invoker, error) {
	uid := os.Getuid()
	if name == "" && uid == 0 {
		if s := os.Getenv("SUDO_UID"); s != "" {
			name = s
		}
	}
	if name == "" {
		inv := &Invoker{UID: uid, GID: os.Getgid()}
		inv.Home = os.Getenv("HOME")
		if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
			if inv.Home == "" {
				inv.Home = u.HomeDir
			}
		}
		return inv, nil
	}
	u, err := user.LookupId(name)
	if err != nil {
		u, err = user.Lookup(name)
	}
	if err != nil {
		return nil, fmt.Errorf("user %s: %w", name, err)
	}
	inv := &Invoker{Home: u.HomeDir, Elevated: uid == 0}
	inv.UID, _ = strconv.Atoi(u.Uid)
	inv.GID, _ = strconv.Atoi(u.Gid)
	if s := os.Getenv("SUDO_GID"); s != "" && os.Getenv("SUDO_UID") == u.Uid {
		if g, err := strconv.Atoi(s); err == nil {
			inv.GID = g
		}
	}
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

// ConfigDir is $XDG_CONFIG_HOME/seqknock, or ~/.config/seqknock of the
// invoking user (under sudo: not root's).
func (inv *Invoker) ConfigDir() string {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" && !inv.Elevated {
		return filepath.Join(d, "seqknock")
	}
	return filepath.Join(inv.Home, ".config", "seqknock")
}

// StateDir is $XDG_STATE_HOME/seqknock, or ~/.local/state/seqknock of the
// invoking user.
func (inv *Invoker) StateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && !inv.Elevated {
		return filepath.Join(d, "seqknock")
	}
	return filepath.Join(inv.Home, ".local", "state", "seqknock")
}

// SlotStore returns the invoking user's slot store.
func (inv *Invoker) SlotStore() *SlotStore {
	s := &SlotStore{Dir: inv.StateDir(), UID: -1, GID: -1}
	if inv.Elevated {
		s.UID, s.GID = inv.UID, inv.GID
	}
	return s
}

// ErrCgoCaps is returned where capabilities cannot be dropped on every
// thread: a binary built with cgo.
var ErrCgoCaps = errors.New("this seqknock binary was built with cgo and cannot drop capabilities on every thread; build it with CGO_ENABLED=0")

// DropPrivileges gives up every privilege once the socket is connected:
// under sudo it becomes the invoking user (groups, gid, uid: which also
// clears every capability); otherwise it clears the capability sets of
// every thread (a binary run with cap_net_admin+ep). It is a no-op for a
// process that holds no capability.
func DropPrivileges(inv *Invoker) error {
	if inv.Elevated {
		if err := syscall.Setgroups(inv.Groups); err != nil {
			return fmt.Errorf("drop privileges: setgroups: %w", err)
		}
		if err := syscall.Setgid(inv.GID); err != nil {
			return fmt.Errorf("drop privileges: setgid: %w", err)
		}
		if err := syscall.Setuid(inv.UID); err != nil {
			return fmt.Errorf("drop privileges: setuid: %w", err)
		}
	}
	held, err := hasCapabilities()
	if err != nil || !held {
		return err
	}
	if builtWithCgo {
		return ErrCgoCaps
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

// hasCapabilities reports whether the calling thread holds any capability
// in its permitted or effective set.
func hasCapabilities() (bool, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, fmt.Errorf("capget: %w", err)
	}
	for _, d := range data {
		if d.Permitted != 0 || d.Effective != 0 {
			return true, nil
		}
	}
	return false, nil
}
