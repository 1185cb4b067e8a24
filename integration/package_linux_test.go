package integration

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
	"golang.org/x/sys/unix"
)

// TestDebianVersion: scripts/debversion.awk turns a binary's build info
// (go version -m) into a Debian version.
func TestDebianVersion(t *testing.T) {
	netnstest.RequireTools(t, "awk")
	root := repoRoot(t)
	for _, tc := range []struct{ info, want string }{
		{"x: go1.26\n\tpath\tp\n\tmod\tgithub.com/seqknock/seqknock\tv1.2.0\th1:x=\n\tbuild\tvcs.revision=683e5aa3b1c2f0e1\n\tbuild\tvcs.modified=false\n", "1.2.0"},
		{"\tmod\tm\tv1.2.0-rc.1\t\n", "1.2.0~rc.1"},
		{"\tmod\tm\tv0.0.0-20261123164639-683e5aa3b1c2\t\n\tbuild\tvcs.revision=683e5aa3b1c2f0e1\n", "0.0.0~20261123164639.683e5aa3b1c2"},
		{"\tmod\tm\tv0.0.0-20261123164639-683e5aa3b1c2+dirty\t\n\tbuild\tvcs.modified=true\n", "0.0.0~20261123164639.683e5aa3b1c2+dirty"},
		{"\tmod\tm\t(devel)\t\n\tbuild\tvcs.revision=683e5aa3b1c2f0e1\n\tbuild\tvcs.modified=true\n", "0.0.0~devel.683e5aa3b1c2+modified"},
		{"\tmod\tm\t(devel)\t\n", "0.0.0~devel"},
	} {
		cmd := exec.Command("awk", "-f", filepath.Join(root, "scripts", "debversion.awk"))
		cmd.Stdin = strings.NewReader(tc.info)
		out, err := cmd.Output()
		if got := strings.TrimSpace(string(out)); err != nil || got != tc.want {
			t.Errorf("%q: %v %q, want %q", tc.info, err, got, tc.want)
		}
	}
}

// TestDebianPackages builds the .debs with scripts/package.sh and installs,
// removes and purges each with dpkg. dpkg runs inside a network namespace,
// so the table the maintainer scripts remove is that namespace's, never the
// host's. The packages install into the real /usr: the test holds a
// machine-wide lock, refuses to run where either package or /etc/seqknock
// already exists, and purges both at the end, also on failure.
func TestDebianPackages(t *testing.T) {
	netnstest.RequireRoot(t, "dpkg", "dpkg-deb", "dpkg-query", "systemd-analyze", "go", "getent")
	// Other checkouts on this machine may run this test at the same time:
	// one at a time, until this one has purged what it installed.
	lockMachine(t, "seqknock-package-test.lock", 20*time.Minute)
	for _, p := range []string{"seqknock", "seqknockd"} {
		if st := pkgStatus(p); st != "not-installed" {
			t.Fatalf("package %s is %s on this machine; this test installs and purges it and will not touch an existing install", p, st)
		}
	}
	if _, err := os.Stat("/etc/seqknock"); err == nil {
		t.Fatal("/etc/seqknock exists on this machine; this test would install its config there")
	}
	groupExisted := exec.Command("getent", "group", "seqknock").Run() == nil

	root := repoRoot(t)
	dist := t.TempDir()
	build := exec.Command("sh", filepath.Join(root, "scripts", "package.sh"), dist)
	out, err := build.Output()
	if err != nil {
		t.Fatalf("package.sh: %v\n%s", err, out)
	}
	debs := strings.Fields(string(out))
	if len(debs) != 2 || !strings.Contains(debs[0], "/seqknock_") || !strings.Contains(debs[1], "/seqknockd_") {
		t.Fatalf("package.sh printed %q", out)
	}
	client, server := debs[0], debs[1]

	ns := netnstest.New(t, "pkg")
	// dpkg waits for no lock: another apt or dpkg on the machine makes it
	// fail at once, so retry for a while.
	dpkg := func(args ...string) (string, error) {
		var out string
		var err error
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(2 * time.Second) {
			out, err = ns.Run("dpkg", args...)
			if err == nil || !strings.Contains(out, "lock") || time.Now().After(deadline) {
				return out, err
			}
		}
	}
	mustDpkg := func(args ...string) {
		t.Helper()
		if out, err := dpkg(args...); err != nil {
			t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := dpkg("--purge", "seqknock", "seqknockd"); err != nil {
			t.Errorf("cleanup: dpkg --purge: %v\n%s", err, out)
		}
		os.Remove("/etc/seqknock/alice.key")
		os.Remove("/etc/seqknock")
		if !groupExisted {
			exec.Command("groupdel", "seqknock").Run()
		}
	})
	version := func(pkg string) string {
		out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output()
		if err != nil {
			t.Fatalf("dpkg-query %s: %v", pkg, err)
		}
		return string(out)
	}
	modes := func(want map[string]string) {
		t.Helper()
		for path, mode := range want {
			fi, err := os.Stat(path)
			switch {
			case mode == "" && err == nil:
				t.Errorf("%s is still there", path)
			case mode == "" || err == nil && fi.Mode().String() == mode:
			case err != nil:
				t.Errorf("%s: %v", path, err)
			default:
				t.Errorf("%s: mode %s, want %s", path, fi.Mode(), mode)
			}
		}
	}
	debVersion := func(bin string) string {
		out, err := exec.Command("sh", "-c", `go version -m "$1" | awk -f "$2"`, "sh", bin,
			filepath.Join(root, "scripts", "debversion.awk")).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	tableListed := func() bool {
		out, err := ns.Run("nft", "list", "table", "inet", "seqknock")
		return err == nil && strings.Contains(out, "table inet seqknock")
	}

	// The server package.
	mustDpkg("-i", server)
	units := []string{"seqknockd.service", "seqknockd-sync.service", "seqknockd-sync.timer"}
	files := map[string]string{
		"/usr/sbin/seqknockd":                                      "-rwxr-xr-x",
		"/etc/seqknock":                                            "drwx------",
		"/etc/seqknock/seqknockd.toml":                             "-rw-------",
		"/usr/share/man/man8/seqknockd.8.gz":                       "-rw-r--r--",
		"/usr/share/man/man5/seqknockd.toml.5.gz":                  "-rw-r--r--",
		"/usr/share/bash-completion/completions/seqknockd":         "-rw-r--r--",
		"/usr/share/zsh/vendor-completions/_seqknockd":             "-rw-r--r--",
		"/usr/share/doc/seqknockd/copyright":                       "-rw-r--r--",
		"/usr/lib/systemd/system/nftables.service.d/seqknock.conf": "-rw-r--r--",
	}
	for _, u := range units {
		files["/usr/lib/systemd/system/"+u] = "-rw-r--r--"
	}
	modes(files)
	if out, _ := exec.Command("dpkg-query", "-W", "-f", "${Conffiles}", "seqknockd").Output(); !strings.Contains(string(out), "/etc/seqknock/seqknockd.toml ") {
		t.Errorf("conffiles: %q", out)
	}
	if err := exec.Command("getent", "group", "seqknock").Run(); err != nil {
		t.Error("postinst created no group seqknock")
	}
	if v := version("seqknockd"); v != debVersion("/usr/sbin/seqknockd") || !strings.HasPrefix(v, "0.") && !strings.HasPrefix(v, "1") {
		t.Errorf("package version %q, binary's build info says %q", v, debVersion("/usr/sbin/seqknockd"))
	}
	if out, err := exec.Command("/usr/sbin/seqknockd", "--version").Output(); err != nil || !strings.HasPrefix(string(out), "seqknockd ") {
		t.Errorf("seqknockd --version: %v %q", err, out)
	}
	// Installed disabled: nothing links to the units.
	if links, _ := filepath.Glob("/etc/systemd/system/*/seqknockd*"); len(links) > 0 {
		t.Errorf("units enabled: %v", links)
	}
	verify := exec.Command("systemd-analyze", append([]string{"verify"}, units...)...)
	verify.Dir = "/usr/lib/systemd/system"
	if out, err := verify.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// A key for the conffile's user and a sync in the namespace; then
	// remove (the table goes, the config and key stay), install again, sync,
	// and purge (the table and the config go, the key stays).
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile("/etc/seqknock/alice.key", []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		op     string
		config string
	}{{"-r", "-rw-------"}, {"--purge", ""}} {
		if step.op == "--purge" {
			mustDpkg("-i", server)
		}
		ns.MustRun("/usr/sbin/seqknockd", "sync")
		if !tableListed() {
			t.Fatalf("no table after seqknockd sync")
		}
		mustDpkg(step.op, "seqknockd")
		if tableListed() {
			t.Errorf("dpkg %s left the table", step.op)
		}
		modes(map[string]string{"/usr/sbin/seqknockd": "", "/usr/lib/systemd/system/seqknockd.service": "",
			"/usr/share/man/man8/seqknockd.8.gz": "", "/etc/seqknock/seqknockd.toml": step.config,
			"/etc/seqknock/alice.key": "-rw-------"})
	}

	// The client package, with the broker's and the gateway's units.
	mustDpkg("-i", client)
	modes(map[string]string{
		"/usr/lib/systemd/system/seqknock-broker.socket":   "-rw-r--r--",
		"/usr/lib/systemd/system/seqknock-broker.service":  "-rw-r--r--",
		"/usr/lib/systemd/system/seqknock-gateway.service": "-rw-r--r--",
		"/usr/bin/seqknock":                               "-rwxr-xr-x",
		"/usr/share/man/man1/seqknock.1.gz":               "-rw-r--r--",
		"/usr/share/bash-completion/completions/seqknock": "-rw-r--r--",
		"/usr/share/zsh/vendor-completions/_seqknock":     "-rw-r--r--",
		"/usr/share/doc/seqknock/copyright":               "-rw-r--r--",
	})
	if v := version("seqknock"); v != debVersion("/usr/bin/seqknock") {
		t.Errorf("package version %q, binary's build info says %q", v, debVersion("/usr/bin/seqknock"))
	}
	if out, err := exec.Command("/usr/bin/seqknock", "--version").Output(); err != nil || !strings.HasPrefix(string(out), "seqknock ") {
		t.Errorf("seqknock --version: %v %q", err, out)
	}
	verify = exec.Command("systemd-analyze", "verify", "seqknock-broker.socket", "seqknock-broker.service", "seqknock-gateway.service")
	verify.Dir = "/usr/lib/systemd/system"
	if out, err := verify.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify (broker): %v\n%s", err, out)
	}
	if b, _ := os.ReadFile("/usr/lib/systemd/system/seqknock-broker.service"); !strings.Contains(string(b), "ExecStart=/usr/bin/seqknock broker ") {
		t.Errorf("seqknock-broker.service: %s", b)
	}
	mustDpkg("-r", "seqknock")
	modes(map[string]string{"/usr/bin/seqknock": "", "/usr/share/man/man1/seqknock.1.gz": ""})
	mustDpkg("--purge", "seqknock")
	for _, p := range []string{"seqknock", "seqknockd"} {
		if st := pkgStatus(p); st != "not-installed" {
			t.Errorf("package %s is %s after purge", p, st)
		}
	}
}

// lockMachine holds an exclusive lock on /run/lock/NAME until t ends (its
// cleanup runs after every cleanup registered later), waiting at most wait
// for another process to release it.
func lockMachine(t *testing.T, name string, wait time.Duration) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join("/run/lock", name), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(wait); ; time.Sleep(time.Second) {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			t.Fatalf("lock /run/lock/%s: %v", name, err)
		}
	}
	t.Cleanup(func() { f.Close() })
}

// pkgStatus is the state of a package as dpkg knows it: "installed",
// "config-files", "not-installed" (also for a package dpkg never saw), ...
func pkgStatus(name string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Status}", name).Output()
	f := strings.Fields(string(out))
	if err != nil || len(f) == 0 {
		return "not-installed"
	}
	return f[len(f)-1]
}
