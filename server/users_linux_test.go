//go:build linux

package server

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/strictfile"
	"github.com/seqknock/seqknock/totp"
)

// LoadKey loads the key file path as the daemon trusts it (loadKeyIn).
func LoadKey(path string) ([]byte, error) {
	dirs := strictfile.NewDirs(os.Geteuid())
	defer dirs.Close()
	return loadKeyIn(dirs, path)
}

// TestUsersAndAdmissionsCommands runs a real `seqknockd run`, knocks over
// loopback in its namespace with alice's key, and checks `users` (alice's
// key fingerprint and last admitted knock, text and --json) and
// `admissions` (the admission, OPEN while the connection is, closed after,
// text and --json); then a reload that adds carol and re-keys bob is
// logged naming them.
func TestUsersAndAdmissionsCommands(t *testing.T) {
	ns, bin, dir, cfg, text := binBed(t, "susers")
	env := "SEQKNOCKD_RUNTIME_DIR=" + filepath.Join(dir, "run")
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:22"); return }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d, log := startBin(t, ns, bin, cfg, env)
	cmd := func(args ...string) string {
		t.Helper()
		c := ns.Command(bin, append([]string{"--config", cfg}, args...)...)
		c.Env = append(os.Environ(), env)
		out, errOut, code := runBin(t, c)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		return out
	}
	aliceKey, err := LoadKey(filepath.Join(dir, "alice.key"))
	if err != nil {
		t.Fatal(err)
	}
	fp := totp.Fingerprint(aliceKey)
	if out := cmd("users"); !strings.Contains(out, "alice: ports 22,2222; last admitted knock: never") || !strings.Contains(out, "  key "+fp+" ") {
		t.Fatalf("users before a knock:\n%s", out)
	}
	der, _ := totp.NewDeriver(aliceKey, "lab")
	var conn *net.TCPConn
	if err := ns.Do(func() (err error) {
		conn, err = dialISN("127.0.0.1", 22, der.ISN(22, totp.Counter(time.Now(), 30*time.Second), 3), time.Second)
		return
	}); err != nil {
		t.Fatalf("alice's knock: %v", err)
	}
	src := conn.LocalAddr().String()
	waitFor(t, "the admission", func() bool { return strings.Contains(log.String(), "knock admitted") })
	waitFor(t, "the admission in the info file", func() bool {
		return strings.Contains(cmd("admissions"), " alice "+src+" -> 127.0.0.1:22 OPEN")
	})
	if out := cmd("admissions", "--open"); strings.Count(out, "\n") != 1 || !strings.Contains(out, src) {
		t.Fatalf("admissions --open:\n%s", out)
	}
	var as []map[string]any
	if err := json.Unmarshal([]byte(cmd("admissions", "--json")), &as); err != nil || len(as) != 1 || as[0]["user"] != "alice" || as[0]["src"] != src || as[0]["open"] != true {
		t.Fatalf("admissions --json: %v %v", err, as)
	}
	if out := cmd("users"); !strings.Contains(out, "alice: ports 22,2222; last admitted knock: ") || !strings.Contains(out, "from 127.0.0.1 to port 22") {
		t.Fatalf("users after a knock:\n%s", out)
	}
	var us []UserReport
	if err := json.Unmarshal([]byte(cmd("users", "--json")), &us); err != nil || len(us) != 2 || us[0].Name != "alice" ||
		us[0].Keys[0].Fingerprint != fp || us[0].LastKnock == nil || us[0].LastKnock.Src.String() != src || us[1].LastKnock != nil {
		t.Fatalf("users --json: %v %+v", err, us)
	}
	// Closed at both ends: the server's socket leaves CLOSE_WAIT.
	conn.Close()
	if s, err := ln.Accept(); err == nil {
		s.Close()
	}
	waitFor(t, "the connection closed", func() bool {
		out := cmd("admissions")
		return strings.Contains(out, src+" -> 127.0.0.1:22 closed") && cmd("admissions", "--open") == "no admissions recorded\n"
	})

	// A reload names who changed.
	os.WriteFile(filepath.Join(dir, "carol.key"), []byte("Y2Fyb2wta2V5LTAxMjM0NTY3ODlhYmNkZWZnaGlqa2xtbm9w\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "bob2.key"), []byte("Ym9iMi1rZXktMDEyMzQ1Njc4OWFiY2RlZmdoaWprbG1ub3A=\n"), 0o600)
	text = strings.Replace(text, `key_file = "bob.key"`, `key_file = "bob2.key"`, 1) + "[[user]]\nname = \"carol\"\nkey_file = \"carol.key\"\n"
	os.WriteFile(cfg, []byte(text), 0o600)
	d.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload", func() bool { return strings.Contains(log.String(), "config reloaded") })
	if l := lineWith(log.String(), "config reloaded"); !strings.Contains(l, "added=carol") || !strings.Contains(l, "rekeyed=bob") || strings.Contains(l, "removed=") {
		t.Fatalf("reload line: %s", l)
	}
}

func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
