//go:build linux

package netnstest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// User is a real unprivileged user made for one test with useradd (and
// removed with userdel when it ends), with a home directory of its own.
type User struct {
	Name     string
	UID, GID int
	Home     string
	t        testing.TB
}

// NewUser creates a user with a fresh home directory.
func NewUser(t testing.TB) *User {
	t.Helper()
	RequireRoot(t, "useradd", "userdel", "setpriv")
	parent, err := os.MkdirTemp("", "seqknock-home-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(parent, 0o755)
	u := &User{Name: "skt" + suffix(), t: t}
	u.Home = filepath.Join(parent, u.Name)
	if out, err := exec.Command("useradd", "-m", "-d", u.Home, "-s", "/bin/sh", "-U", u.Name).CombinedOutput(); err != nil {
		os.RemoveAll(parent)
		t.Fatalf("useradd %s: %v: %s", u.Name, err, out)
	}
	t.Cleanup(func() {
		exec.Command("pkill", "-KILL", "-U", u.Name).Run()
		if out, err := exec.Command("userdel", "-f", u.Name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v: %s", u.Name, err, out)
		}
		os.RemoveAll(parent)
	})
	for _, f := range []struct {
		flag string
		dst  *int
	}{{"-u", &u.UID}, {"-g", &u.GID}} {
		out, err := exec.Command("id", f.flag, u.Name).Output()
		if err != nil {
			t.Fatalf("id %s %s: %v", f.flag, u.Name, err)
		}
		*f.dst, _ = strconv.Atoi(strings.TrimSpace(string(out)))
	}
	return u
}

// AllowSudo installs a sudoers rule that lets the user run exactly the
// program at path as root, without a password, and removes it when the
// test ends.
func (u *User) AllowSudo(path string) {
	t := u.t
	t.Helper()
	RequireRoot(t, "sudo", "visudo")
	rule := filepath.Join("/etc/sudoers.d", "seqknock-test-"+suffix())
	line := u.Name + " ALL=(root) NOPASSWD: " + path + "\n"
	if err := os.WriteFile(rule, []byte(line), 0o440); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(rule) })
	if out, err := exec.Command("visudo", "-c", "-f", rule).CombinedOutput(); err != nil {
		t.Fatalf("visudo -c %s: %v: %s", rule, err, out)
	}
}

// Command returns a command that runs name as the user (setpriv with the
// user's uid, gid and groups) in ns, or in the current namespace when ns
// is nil, with an environment like a login's.
func (u *User) Command(ns *NS, name string, args ...string) *exec.Cmd {
	argv := append([]string{"--reuid=" + strconv.Itoa(u.UID), "--regid=" + strconv.Itoa(u.GID), "--init-groups", name}, args...)
	var cmd *exec.Cmd
	if ns != nil {
		cmd = ns.Command("setpriv", argv...)
	} else {
		cmd = exec.Command("setpriv", argv...)
	}
	cmd.Dir = u.Home
	cmd.Env = []string{"HOME=" + u.Home, "USER=" + u.Name, "LOGNAME=" + u.Name, "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"}
	return cmd
}

// WriteFile writes a file under the user's home (path relative to it),
// creating parent directories, all owned by the user.
func (u *User) WriteFile(rel string, data []byte, perm os.FileMode) string {
	u.t.Helper()
	p := filepath.Join(u.Home, rel)
	for d := filepath.Dir(p); d != u.Home && len(d) > len(u.Home); d = filepath.Dir(d) {
		defer os.Chown(d, u.UID, u.GID)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		u.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, perm); err != nil {
		u.t.Fatal(err)
	}
	os.Chmod(p, perm)
	if err := os.Chown(p, u.UID, u.GID); err != nil {
		u.t.Fatal(err)
	}
	return p
}

// Group is a group made for one test with groupadd (removed with groupdel
// when it ends).
type Group struct {
	Name string
	GID  int
}

// NewGroup creates a group with no members.
func NewGroup(t testing.TB) *Group {
	t.Helper()
	RequireRoot(t, "groupadd", "groupdel", "getent")
	g := &Group{Name: "skg" + suffix()}
	if out, err := exec.Command("groupadd", g.Name).CombinedOutput(); err != nil {
		t.Fatalf("groupadd %s: %v: %s", g.Name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("groupdel", "-f", g.Name).CombinedOutput(); err != nil {
			t.Errorf("groupdel %s: %v: %s", g.Name, err, out)
		}
	})
	out, err := exec.Command("getent", "group", g.Name).Output()
	f := strings.Split(strings.TrimSpace(string(out)), ":")
	if err != nil || len(f) < 3 {
		t.Fatalf("getent group %s: %v: %q", g.Name, err, out)
	}
	g.GID, _ = strconv.Atoi(f[2])
	return g
}

// Join makes the user a (supplementary) member of g; commands made after
// it (Command uses the user database's groups) carry it.
func (u *User) Join(g *Group) {
	u.t.Helper()
	if out, err := exec.Command("usermod", "-aG", g.Name, u.Name).CombinedOutput(); err != nil {
		u.t.Fatalf("usermod -aG %s %s: %v: %s", g.Name, u.Name, err, out)
	}
}

// SetcapCopy copies bin to a fresh directory that everyone may read and
// gives the copy cap_net_admin+ep (the setcap mode), removed when t ends.
func SetcapCopy(t testing.TB, bin string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "seqknock-capcopy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	src, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(dir, "seqknock")
	if err := os.WriteFile(cp, src, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("setcap", "cap_net_admin+ep", cp).CombinedOutput(); err != nil {
		t.Fatalf("setcap: %v: %s", err, out)
	}
	return cp
}
