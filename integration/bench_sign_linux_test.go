//go:build linux

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// BenchmarkSignedSCP copies 256 MiB with scp from a protected sshd over a
// veth pair, through a TCP-MD5-signed connection (port 22, sign =
// "tcp-md5") and an unsigned one (port 2222, the same sshd config, no
// sign), alternating, three times each, ssh talking to the socket itself
// (ProxyUseFdpass), and prints the median times and their ratio (scp -O:
// the test sshd has no sftp subsystem). Run it
// alone: go test ./integration -run '^$' -bench SignedSCP -benchtime 1x
func BenchmarkSignedSCP(b *testing.B) {
	netnstest.RequireRoot(b, "scp")
	w := newWorld(b, 240, 2*time.Second)
	w.writeSignedConfig()
	cfg := fmt.Sprintf(signedConfig, w.period) + "[[service]]\nport = 2222\n"
	os.WriteFile(w.path("seqknockd.toml"), []byte(cfg), 0o600)
	sshd, _ := exec.LookPath("sshd")
	plain := w.srv.Command(sshd, "-D", "-e", "-p", "2222", "-f", w.path("sshd_config"))
	plain.Stderr = &netnstest.Buffer{}
	if err := plain.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { plain.Process.Kill(); plain.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if out, _ := w.srv.Run("ss", "-Hltn", "sport = :2222"); strings.Count(out, "LISTEN") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("sshd -p 2222 did not listen: %s", plain.Stderr)
		}
	}
	w.startDaemon()
	w.waitLog("msg=\"listener signed\"", 2)
	size := int64(256 << 20)
	if mib, err := strconv.Atoi(os.Getenv("SEQKNOCK_SCP_MIB")); err == nil && mib > 0 {
		size = int64(mib) << 20 // a quick trial run
	}
	file := w.path("bulk")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		b.Fatal(err)
	}
	os.Truncate(file, size) // zeros: ssh does not compress by default

	run := func(port string, sign bool) time.Duration {
		flags := []string{}
		if sign {
			flags = append(flags, "--sign-key-file", w.path("ssh.sign"))
		}
		args := append(w.sshArgs(w.proxyCmd("fdpass", flags...)), "-o", "ProxyUseFdpass=yes", "-q", "-O", "-P", port,
			"root@"+w.cl.A4+":"+file, "/dev/null")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", w.cli.Name, "scp"}, args...)...)
		cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+w.path("state"))
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("scp port %s: %v: %s\nsshd -p 2222: %s\nseqknockd: %s", port, err, out, plain.Stderr, w.daemonLog)
		}
		return time.Since(start)
	}
	var signed, unsigned []time.Duration
	for i := 0; i < 3; i++ {
		unsigned = append(unsigned, run("2222", false))
		signed = append(signed, run("22", true))
	}
	slices.Sort(signed)
	slices.Sort(unsigned)
	mibps := func(d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }
	s, u := signed[1], unsigned[1]
	b.ReportMetric(mibps(s), "signed-MiB/s")
	b.ReportMetric(mibps(u), "unsigned-MiB/s")
	b.ReportMetric(s.Seconds()/u.Seconds(), "time-ratio")
	b.Logf("scp %d MiB, median of 3: signed (tcp-md5) %v (%.0f MiB/s), unsigned %v (%.0f MiB/s): ratio (signed/unsigned time) %.2f; all signed %v, all unsigned %v",
		size>>20, s.Round(time.Millisecond), mibps(s), u.Round(time.Millisecond), mibps(u), s.Seconds()/u.Seconds(),
		strings.Trim(fmt.Sprint(signed), "[]"), strings.Trim(fmt.Sprint(unsigned), "[]"))
}
