package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSSHAliasHostName: the usual ~/.ssh/config naming, `Host prod` with
// `HostName <address>`, through the stanza `seqknock ssh-config prod`
// prints: client.toml names the alias, ssh's %h is the address, and
// --alias %n makes the match. With -v, seqknock says on stderr which entry
// matched and each knock; stdout carries only the ssh session.
func TestSSHAliasHostName(t *testing.T) {
	t.Parallel()
	w := newWorld(t, 140, 30*time.Second)
	w.startDaemon()
	cfg := w.path("client.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("[[host]]\nmatch = \"prod\"\nkey_file = %q\nrealm = \"lab\"\n", w.path("alice.key"))), 0o600)
	stanza, err := exec.Command(w.seqknock, "ssh-config", "--config", cfg, "prod").Output()
	if err != nil {
		t.Fatalf("ssh-config: %v", err)
	}
	if !strings.Contains(string(stanza), " proxy --config "+cfg+" --alias %n %h %p\n") {
		t.Fatalf("stanza:\n%s", stanza)
	}
	sshConfig := func(stanza string) string {
		p := w.path("ssh_config")
		os.WriteFile(p, []byte(stanza+fmt.Sprintf(`    HostName %s
    User root
    IdentityFile %s
    IdentitiesOnly yes
    BatchMode yes
    StrictHostKeyChecking no
    UserKnownHostsFile %s
    ConnectTimeout 20
    LogLevel ERROR
`, w.cl.A4, w.path("id"), w.path("known_hosts"))), 0o600)
		return p
	}
	ssh := func(config string) (stdout, stderr string, err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		// No connection sharing: each run must knock (and show -v's
		// lines), and the stanza's ControlPath is under root's home.
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", w.cli.Name, "ssh", "-F", config, "-o", "ControlPath=none", "prod", "echo", "ok")
		cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+w.path("state"))
		var o, e strings.Builder
		cmd.Stdout, cmd.Stderr = &o, &e
		err = cmd.Run()
		return o.String(), e.String(), err
	}

	if out, e, err := ssh(sshConfig(string(stanza))); err != nil || out != "ok\n" {
		t.Errorf("ssh prod with the ssh-config stanza: %v, stdout %q, stderr %s", err, out, e)
	}

	verbose := strings.Replace(string(stanza), " proxy ", " proxy -v ", 1)
	out, e, err := ssh(sshConfig(verbose))
	if err != nil || out != "ok\n" {
		t.Errorf("ssh prod with -v: %v, stdout %q, stderr %s", err, out, e)
	}
	want := regexp.MustCompile(`^seqknock: prod matches \[\[host\]\] match = "prod" in ` + regexp.QuoteMeta(cfg) + `
seqknock: knock ` + regexp.QuoteMeta(w.cl.A4) + `:22 counter \d+ slot \d \(of 4\), waiting 3s for a SYN-ACK
$`)
	if !want.MatchString(e) {
		t.Errorf("-v stderr:\n%s\nwant it to match\n%s", e, want)
	}

	// Without --alias, seqknock sees only the address: no entry matches.
	plain := strings.Replace(string(stanza), " --alias %n ", " ", 1)
	if out, e, err := ssh(sshConfig(plain)); err == nil || out != "" ||
		!strings.Contains(e, "no [[host]] in "+cfg+" matches "+w.cl.A4+" port 22") {
		t.Errorf("without --alias: %v, stdout %q, stderr %s", err, out, e)
	}
}
