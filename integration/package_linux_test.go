package integration

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
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
// removes and purges each with dpkg inside a throwaway root: an overlay of
// the host's / whose writes go to a tmpfs, in a private mount namespace,
// entered with chroot, in a network namespace. dpkg, its database and the
// maintainer scripts (groupadd, seqknockd teardown) see a whole system but
// change only that root, so the test runs whether or not seqknock is
// installed on the host, and it checks that the host's dpkg database,
// accounts and /etc/seqknock are byte-identical afterwards.
func TestDebianPackages(t *testing.T) {
	netnstest.RequireRoot(t, "dpkg", "dpkg-deb", "dpkg-query", "systemd-analyze", "go", "getent",
		"unshare", "nsenter", "chroot", "mount", "groupadd", "groupdel", "useradd", "gpasswd")
	hostBefore := hostPackageState(t)
	t.Cleanup(func() {
		// Runs last, once the throwaway root is gone.
		if after := hostPackageState(t); after != hostBefore {
			t.Errorf("the host changed:\nbefore:\n%s\nafter:\n%s", hostBefore, after)
		}
	})

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
	client, server := "/tmp/debs/"+filepath.Base(debs[0]), "/tmp/debs/"+filepath.Base(debs[1])

	ns := netnstest.New(t, "pkg")
	r := newThrowawayRoot(t, ns, dist)
	// The throwaway root starts as a copy of the host: make it a machine
	// without seqknock, whatever the host has.
	r.mustRun("sh", "-c", `dpkg --purge seqknock seqknockd >/dev/null 2>&1 || true
		rm -rf /etc/seqknock /var/lib/seqknock
		if getent group seqknock >/dev/null; then groupdel seqknock; fi`)
	for _, p := range []string{"seqknock", "seqknockd"} {
		if st := r.pkgStatus(p); st != "not-installed" {
			t.Fatalf("package %s is %s in the throwaway root after purge", p, st)
		}
	}

	mustDpkg := func(args ...string) {
		t.Helper()
		r.mustRun("dpkg", args...)
	}
	version := func(pkg string) string {
		out, err := r.run("dpkg-query", "-W", "-f", "${Version}", pkg)
		if err != nil {
			t.Fatalf("dpkg-query %s: %v: %s", pkg, err, out)
		}
		return out
	}
	modes := func(want map[string]string) {
		t.Helper()
		for path, mode := range want {
			fi, err := os.Lstat(r.path(path))
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
		out, err := exec.Command("sh", "-c", `go version -m "$1" | awk -f "$2"`, "sh", r.path(bin),
			filepath.Join(root, "scripts", "debversion.awk")).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	tableListed := func() bool {
		out, err := r.run("nft", "list", "table", "inet", "seqknock")
		return err == nil && strings.Contains(out, "table inet seqknock")
	}
	hasGroup := func() bool {
		_, err := r.run("getent", "group", "seqknock")
		return err == nil
	}
	sameAsRepo := func(installed, repoFile string) {
		t.Helper()
		got, err := os.ReadFile(r.path(installed))
		want, err2 := os.ReadFile(filepath.Join(root, repoFile))
		if err != nil || err2 != nil || string(got) != string(want) {
			t.Errorf("%s is not %s: %v %v", installed, repoFile, err, err2)
		}
	}

	// The server package.
	mustDpkg("-i", server)
	units := []string{"seqknockd.service", "seqknockd-sync.service", "seqknockd-sync.timer"}
	files := map[string]string{
		"/usr/sbin/seqknockd":                                      "-rwxr-xr-x",
		"/etc/seqknock":                                            "drwx------",
		"/etc/seqknock/seqknockd.toml":                             "-rw-------",
		"/etc/seqknock/seqknockd.toml.example":                     "-rw-------",
		"/usr/share/man/man8/seqknockd.8.gz":                       "-rw-r--r--",
		"/usr/share/man/man5/seqknockd.toml.5.gz":                  "-rw-r--r--",
		"/usr/share/bash-completion/completions/seqknockd":         "-rw-r--r--",
		"/usr/share/zsh/vendor-completions/_seqknockd":             "-rw-r--r--",
		"/usr/share/doc/seqknockd/copyright":                       "-rw-r--r--",
		"/usr/share/doc/seqknockd/README.md":                       "-rw-r--r--",
		"/usr/share/doc/seqknockd/SECURITY.md":                     "-rw-r--r--",
		"/usr/lib/systemd/system/nftables.service.d/seqknock.conf": "-rw-r--r--",
	}
	for _, u := range units {
		files["/usr/lib/systemd/system/"+u] = "-rw-r--r--"
	}
	modes(files)
	// The docs name these: the README its own path and the example, the
	// man page the example's path.
	sameAsRepo("/etc/seqknock/seqknockd.toml.example", "scripts/seqknockd.toml.example")
	sameAsRepo("/usr/share/doc/seqknockd/README.md", "README.md")
	if out, _ := r.run("dpkg-query", "-W", "-f", "${Conffiles}", "seqknockd"); !strings.Contains(out, "/etc/seqknock/seqknockd.toml ") ||
		!strings.Contains(out, "/etc/seqknock/seqknockd.toml.example ") {
		t.Errorf("conffiles: %q", out)
	}
	if !hasGroup() {
		t.Error("postinst created no group seqknock")
	}
	if v := version("seqknockd"); v != debVersion("/usr/sbin/seqknockd") || !strings.HasPrefix(v, "0.") && !strings.HasPrefix(v, "1") {
		t.Errorf("package version %q, binary's build info says %q", v, debVersion("/usr/sbin/seqknockd"))
	}
	if out, err := r.run("/usr/sbin/seqknockd", "--version"); err != nil || !strings.HasPrefix(out, "seqknockd ") {
		t.Errorf("seqknockd --version: %v %q", err, out)
	}
	// Installed disabled: nothing links to the units.
	if links, _ := filepath.Glob(r.path("/etc/systemd/system/*/seqknockd*")); len(links) > 0 {
		t.Errorf("units enabled: %v", links)
	}
	if out, err := r.run("sh", "-c", `cd /usr/lib/systemd/system && systemd-analyze verify "$@" 2>&1`, "sh",
		units[0], units[1], units[2]); err != nil || len(strings.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	// A key for the conffile's user and a sync in the namespace, which
	// writes the state file; then remove (the table goes, the config, key
	// and state stay), install again, sync, and purge (the table, the
	// config, the example, the state and the group go, the key stays).
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(r.path("/etc/seqknock/alice.key"), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		op     string
		config string
		state  string
	}{{"-r", "-rw-------", "-rw-------"}, {"--purge", "", ""}} {
		if step.op == "--purge" {
			mustDpkg("-i", server)
		}
		r.mustRun("/usr/sbin/seqknockd", "sync")
		if !tableListed() {
			t.Fatalf("no table after seqknockd sync")
		}
		modes(map[string]string{"/var/lib/seqknock/state.json": "-rw-------"})
		mustDpkg(step.op, "seqknockd")
		if tableListed() {
			t.Errorf("dpkg %s left the table", step.op)
		}
		modes(map[string]string{"/usr/sbin/seqknockd": "", "/usr/lib/systemd/system/seqknockd.service": "",
			"/usr/share/man/man8/seqknockd.8.gz": "", "/etc/seqknock/seqknockd.toml": step.config,
			"/etc/seqknock/seqknockd.toml.example": step.config, "/var/lib/seqknock/state.json": step.state,
			"/etc/seqknock/alice.key": "-rw-------"})
	}
	if hasGroup() {
		t.Error("purge of seqknockd, with seqknock not installed, left the group seqknock")
	}
	modes(map[string]string{"/var/lib/seqknock": ""})

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
		"/usr/share/doc/seqknock/README.md":               "-rw-r--r--",
		"/usr/share/doc/seqknock/SECURITY.md":             "-rw-r--r--",
	})
	if !hasGroup() {
		t.Error("the client's postinst created no group seqknock")
	}
	if v := version("seqknock"); v != debVersion("/usr/bin/seqknock") {
		t.Errorf("package version %q, binary's build info says %q", v, debVersion("/usr/bin/seqknock"))
	}
	if out, err := r.run("/usr/bin/seqknock", "--version"); err != nil || !strings.HasPrefix(out, "seqknock ") {
		t.Errorf("seqknock --version: %v %q", err, out)
	}
	if out, err := r.run("sh", "-c", `cd /usr/lib/systemd/system && systemd-analyze verify seqknock-broker.socket seqknock-broker.service seqknock-gateway.service 2>&1`); err != nil || len(strings.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify (broker): %v\n%s", err, out)
	}
	if b, _ := os.ReadFile(r.path("/usr/lib/systemd/system/seqknock-broker.service")); !strings.Contains(string(b), "ExecStart=/usr/bin/seqknock broker ") {
		t.Errorf("seqknock-broker.service: %s", b)
	}
	mustDpkg("-r", "seqknock")
	modes(map[string]string{"/usr/bin/seqknock": "", "/usr/share/man/man1/seqknock.1.gz": ""})
	// A group that grants access to someone stays, and the purge says so;
	// without its member, the next purge removes it.
	r.mustRun("useradd", "--system", "--no-create-home", "--groups", "seqknock", "skpkgmember")
	if out := r.mustRun("dpkg", "--purge", "seqknock"); !strings.Contains(out, "kept group seqknock") || !hasGroup() {
		t.Errorf("purge with a member in group seqknock: group kept %v, said %q", hasGroup(), out)
	}
	r.mustRun("gpasswd", "-d", "skpkgmember", "seqknock")
	mustDpkg("-i", client)
	mustDpkg("--purge", "seqknock")
	if hasGroup() {
		t.Error("purge of seqknock, the last package, left the group seqknock")
	}
	for _, p := range []string{"seqknock", "seqknockd"} {
		if st := r.pkgStatus(p); st != "not-installed" {
			t.Errorf("package %s is %s after purge", p, st)
		}
	}
}

// throwawayRoot is a root file system that reads as the host's / and keeps
// every write in a tmpfs of its own: an overlay mounted in a private mount
// namespace (inside a network namespace), held by one process chrooted
// into it. Commands run in it with nsenter; the test reads its files
// through /proc/PID/root. Everything goes when that process ends.
type throwawayRoot struct {
	t    *testing.T
	pid  int
	proc string
}

// newThrowawayRoot makes a throwaway root in ns with the host directory
// debs at /tmp/debs, removed when t ends.
func newThrowawayRoot(t *testing.T, ns *netnstest.NS, debs string) *throwawayRoot {
	t.Helper()
	// The overlay's upper and work directories are on a tmpfs mounted
	// over mnt in the private namespace: not under the lower /, which the
	// kernel refuses, and never visible to the host.
	mnt := t.TempDir()
	script := `set -e
m=$1 debs=$2
mount -t tmpfs -o mode=0700 seqknock-root "$m"
mkdir "$m/upper" "$m/work" "$m/root"
mount -t overlay seqknock-root -o "lowerdir=/,upperdir=$m/upper,workdir=$m/work" "$m/root"
mount --rbind /dev "$m/root/dev"
mount -t proc proc "$m/root/proc"
mount --rbind /sys "$m/root/sys"
# An empty /run: no /run/systemd/system, so the maintainer scripts leave
# systemd alone (the host's, reachable through its socket there).
mount -t tmpfs -o mode=0755 tmpfs "$m/root/run"
mount -t tmpfs -o mode=1777 tmpfs "$m/root/tmp"
mkdir "$m/root/tmp/debs"
mount --bind -o ro "$debs" "$m/root/tmp/debs"
echo ready
exec chroot "$m/root" cat
`
	cmd := ns.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", mnt, debs)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// ip netns exec, unshare, sh and chroot each exec the next: the pid
	// is the one of the cat that holds the root.
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line := make([]byte, len("ready\n"))
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("throwaway root: %v %q: %s", err, line, stderr.String())
	}
	r := &throwawayRoot{t: t, pid: cmd.Process.Pid, proc: fmt.Sprintf("/proc/%d/root", cmd.Process.Pid)}
	// Wait for the chroot: / of the holder is the overlay once its
	// /tmp/debs holds the packages.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(r.path("/tmp/debs")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("throwaway root: no /tmp/debs in %s", r.proc)
		}
	}
	return r
}

// path is the host's path of the root's file name.
func (r *throwawayRoot) path(name string) string { return r.proc + name }

// run runs a command in the root, its mount and network namespaces, with
// a clean environment (no SEQKNOCKD_STATE: seqknockd keeps its default
// state file, in the root), and returns its combined output.
func (r *throwawayRoot) run(name string, args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"--target", strconv.Itoa(r.pid), "--mount", "--net", "--root", "--wd",
		"--", "env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C",
		name}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// mustRun is run that fails the test on error.
func (r *throwawayRoot) mustRun(name string, args ...string) string {
	r.t.Helper()
	out, err := r.run(name, args...)
	if err != nil {
		r.t.Fatalf("throwaway root: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// pkgStatus is the state of a package as the root's dpkg knows it:
// "installed", "config-files", "not-installed" (also for a package dpkg
// never saw), ...
func (r *throwawayRoot) pkgStatus(name string) string {
	out, err := r.run("dpkg-query", "-W", "-f", "${Status}", name)
	f := strings.Fields(out)
	if err != nil || len(f) == 0 {
		return "not-installed"
	}
	return f[len(f)-1]
}

// testAccount matches the users and groups netnstest makes (skt..., skg...)
// in an account file line: tests running at the same time add and remove
// them, so they are left out of hostPackageState.
var testAccount = regexp.MustCompile(`(?m)^sk[tg][0-9a-f]{6}:.*\n|\bsk[tg][0-9a-f]{6}\b,?`)

// hostPackageState describes what installing seqknock's packages would
// change on the host: a checksum of dpkg's database and of the account
// files (without other tests' accounts), and a listing (mode, size,
// checksum) of every path the packages own or make.
func hostPackageState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, f := range []string{"/var/lib/dpkg/status", "/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"} {
		data, err := os.ReadFile(f)
		if f != "/var/lib/dpkg/status" {
			data = testAccount.ReplaceAll(data, nil)
		}
		fmt.Fprintf(&b, "%s %x %v\n", f, sha256.Sum256(data), err)
	}
	for _, dir := range []string{"/etc/seqknock", "/var/lib/seqknock", "/usr/sbin/seqknockd", "/usr/bin/seqknock",
		"/usr/share/doc/seqknockd", "/usr/share/doc/seqknock", "/usr/lib/systemd/system/seqknockd.service"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				fmt.Fprintf(&b, "%s %v\n", path, err)
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			sum := ""
			if fi.Mode().IsRegular() {
				data, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				sum = fmt.Sprintf("%x", sha256.Sum256(data))
			}
			fmt.Fprintf(&b, "%s %s %d %s\n", path, fi.Mode(), fi.Size(), sum)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}
