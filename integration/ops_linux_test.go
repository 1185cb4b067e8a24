//go:build linux

package integration

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seqknock/seqknock/internal/netnstest"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// TestDemo runs the README's first command and checks its three outcomes
// and that it leaves no namespace behind.
func TestDemo(t *testing.T) {
	netnstest.RequireRoot(t)
	cmd := exec.Command("bash", filepath.Join(repoRoot(t), "scripts", "demo.sh"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo.sh: %v\n%s", err, out)
	}
	for _, want := range []string{
		"no answer in 3 s: the port looks filtered",
		"hello from the protected service",
		"dropped: a knock admits one connection only",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	if list, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(list), fmt.Sprintf("skdemo-srv-%d", cmd.Process.Pid)) {
		t.Errorf("demo left its namespaces:\n%s", list)
	}
}

// tree lists every path under root with its mode and content hash.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		fi, _ := d.Info()
		v := fi.Mode().String()
		if d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			v += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		m[strings.TrimPrefix(p, root)] = v
		return nil
	})
	return m
}

// TestInstallUninstall installs into a staging root twice (the second run
// changes nothing), verifies the units with systemd-analyze, and checks
// that --uninstall leaves the root empty.
func TestInstallUninstall(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze is required under CI=true")
		}
		t.Skip("systemd-analyze not installed")
	}
	root := repoRoot(t)
	dest := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command("sh", append([]string{filepath.Join(root, "scripts", "install.sh")}, args...)...)
		cmd.Env = append(os.Environ(), "DESTDIR="+dest)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("install.sh %v: %v\n%s", args, err, out)
		}
	}
	run()
	first := tree(t, dest)
	for path, want := range map[string]string{
		"/usr/local/sbin/seqknockd":                     "-rwxr-xr-x",
		"/usr/local/bin/seqknock":                       "-rwxr-xr-x",
		"/etc/seqknock":                                 "drwx------",
		"/etc/seqknock/seqknockd.toml.example":          "-rw-------",
		"/etc/seqknock/seqknockd.d":                     "drwx------",
		"/etc/systemd/system/seqknockd.service":         "-rw-r--r--",
		"/usr/local/share/man/man8/seqknockd.8":         "-rw-r--r--",
		"/usr/local/share/man/man1/seqknock.1":          "-rw-r--r--",
		"/usr/local/share/man/man5/seqknockd.toml.5":    "-rw-r--r--",
		"/usr/local/share/zsh/site-functions/_seqknock": "-rw-r--r--",
	} {
		if got := first[path]; !strings.HasPrefix(got, want) {
			t.Errorf("%s: %q, want mode %s", path, got, want)
		}
	}
	run()
	second := tree(t, dest)
	for p, v := range first {
		if p != "/usr/local/sbin/seqknockd" && p != "/usr/local/bin/seqknock" && second[p] != v {
			t.Errorf("second install changed %s", p)
		}
	}
	if len(first) != len(second) {
		t.Errorf("second install: %d paths, first %d", len(second), len(first))
	}

	// systemd-analyze verify, with the binaries where the staging root has
	// them and the man pages it installed: no warning at all.
	vdir := t.TempDir()
	var units []string
	for _, u := range []string{"seqknockd.service", "seqknockd-sync.service", "seqknockd-sync.timer", "seqknock-broker.socket", "seqknock-broker.service"} {
		b, err := os.ReadFile(filepath.Join(dest, "etc/systemd/system", u))
		if err != nil {
			t.Fatal(err)
		}
		b = []byte(strings.ReplaceAll(string(b), "/usr/local/sbin/", dest+"/usr/local/sbin/"))
		b = []byte(strings.ReplaceAll(string(b), "/usr/local/bin/", dest+"/usr/local/bin/"))
		os.WriteFile(filepath.Join(vdir, u), b, 0o644)
		units = append(units, u)
	}
	// The drop-in for nftables.service, on a stand-in for Debian's unit.
	os.MkdirAll(filepath.Join(vdir, "nftables.service.d"), 0o755)
	os.WriteFile(filepath.Join(vdir, "nftables.service"), []byte("[Unit]\nDescription=nftables\n[Service]\nType=oneshot\nRemainAfterExit=yes\n"+
		"ExecStart=/usr/sbin/nft -f /etc/nftables.conf\nExecReload=/usr/sbin/nft -f /etc/nftables.conf\n"), 0o644)
	dropin, err := os.ReadFile(filepath.Join(dest, "etc/systemd/system/nftables.service.d/seqknock.conf"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(vdir, "nftables.service.d/seqknock.conf"), []byte(strings.ReplaceAll(string(dropin), "/usr/local/sbin/", dest+"/usr/local/sbin/")), 0o644)
	units = append(units, "nftables.service")
	// The long-running form tells systemd when it is ready, feeds a
	// watchdog, and follows nftables.service.
	svc, _ := os.ReadFile(filepath.Join(vdir, "seqknockd.service"))
	for _, want := range []string{"\nType=notify\n", "\nWatchdogSec=", "\nReloadPropagatedFrom=nftables.service\n", "After=local-fs.target nftables.service\n"} {
		if !strings.Contains(string(svc), want) {
			t.Errorf("seqknockd.service lacks %q", strings.TrimSpace(want))
		}
	}
	// With the metrics drop-ins seqknockd(8) documents, read from the
	// unit's .d directory on the unit path.
	os.Mkdir(filepath.Join(vdir, "seqknockd.service.d"), 0o755)
	for _, c := range []string{"metrics-http.conf", "metrics-textfile.conf"} {
		b, err := os.ReadFile(filepath.Join(root, "scripts", "systemd", "seqknockd.service.d-examples", c))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(vdir, "seqknockd.service.d", c), b, 0o644)
	}
	verify := exec.Command("systemd-analyze", append([]string{"verify"}, units...)...)
	verify.Dir = vdir
	verify.Env = append(os.Environ(), "MANPATH="+filepath.Join(dest, "usr/local/share/man"), "SYSTEMD_UNIT_PATH="+vdir+":")
	out, err := verify.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The broker: socket-activated, a SOCK_SEQPACKET socket only root and
	// the group reach, and a service holding CAP_NET_ADMIN alone, as a
	// dynamic user without a network, that exits when idle.
	sock, _ := os.ReadFile(filepath.Join(vdir, "seqknock-broker.socket"))
	bsvc, _ := os.ReadFile(filepath.Join(vdir, "seqknock-broker.service"))
	for _, want := range []string{"\nListenSequentialPacket=/run/seqknock/broker.sock\n", "\nSocketUser=root\n", "\nSocketGroup=seqknock\n", "\nSocketMode=0660\n"} {
		if !strings.Contains(string(sock), want) {
			t.Errorf("seqknock-broker.socket lacks %q", strings.TrimSpace(want))
		}
	}
	for _, want := range []string{"\nCapabilityBoundingSet=CAP_NET_ADMIN\n", "\nAmbientCapabilities=CAP_NET_ADMIN\n", "\nDynamicUser=yes\n",
		"\nPrivateNetwork=yes\n", "\nRestrictAddressFamilies=AF_UNIX\n", "\nNoNewPrivileges=yes\n", " broker --group seqknock --exit-idle 60s\n"} {
		if !strings.Contains(string(bsvc), want) {
			t.Errorf("seqknock-broker.service lacks %q", strings.TrimSpace(want))
		}
	}

	checkCompletion(t, filepath.Join(dest, "usr/local/share/bash-completion/completions/seqknock"),
		filepath.Join(dest, "usr/local/share/zsh/site-functions/_seqknock"), filepath.Join(dest, "usr/local/bin"))

	run("--uninstall")
	if left := tree(t, dest); len(left) != 0 {
		t.Errorf("uninstall left %v", left)
	}
}

// checkCompletion runs the installed bash and zsh completion of seqknock
// (binary in bindir) as the shells would: commands, flags, the hosts of the
// client config for `seqknock proxy <TAB>`, file names after a file flag,
// and file names after "--" without running the command.
func checkCompletion(t *testing.T, bashScript, zshScript, bindir string) {
	t.Helper()
	netnstest.RequireTools(t, "bash", "zsh")
	xdg := t.TempDir()
	os.Mkdir(filepath.Join(xdg, "seqknock"), 0o700)
	os.WriteFile(filepath.Join(xdg, "seqknock", "client.toml"),
		[]byte("[[host]]\nmatch = \"db.example.net\"\nkey_file = \"/k\"\n[[host]]\nmatch = \"*.example.org\"\nkey_file = \"/k\"\n"), 0o600)
	// Words before the cursor, the word at it; what the shell offers.
	cases := []struct{ words, bash, zsh string }{
		{"seqknock ssh", "ssh-config", "ssh-config"},
		{"seqknock proxy --clock", "--clock-offset", "--clock-offset"},
		{"seqknock proxy ''", "db.example.net", "db.example.net"},
		{"seqknock proxy d", "db.example.net", "db.example.net"},
		{"seqknock proxy --key-file ''", "", "FILES"},
		{"seqknock exec h 22 -- ''", "", "FILES"},
	}
	for _, tc := range cases {
		bash := fmt.Sprintf(`source %s
PATH=%s:$PATH
COMP_WORDS=(%s); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _seqknock_complete; echo "${COMPREPLY[*]}"`, bashScript, bindir, tc.words)
		// compadd offers the candidates that start with the word at the
		// cursor, as zsh's does.
		zsh := fmt.Sprintf(`compdef() { :; }; _files() { print FILES; }
compadd() { local w; for w in ${(P)2}; do [[ $w == ${words[CURRENT]}* ]] && print -r -- $w; done; return 0; }
source %s
PATH=%s:$PATH
words=(%s); CURRENT=${#words}; _seqknock`, zshScript, bindir, tc.words)
		for _, sh := range []struct{ name, script, want string }{{"bash", bash, tc.bash}, {"zsh", zsh, tc.zsh}} {
			cmd := exec.Command(sh.name, "-c", sh.script)
			cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+xdg, "SUDO_UID=")
			out, err := cmd.CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != sh.want {
				t.Errorf("%s completion of %s: %v: %q, want %q", sh.name, tc.words, err, out, sh.want)
			}
		}
	}
}
