//go:build linux

package server

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// BenchmarkNearMissRSS10kUsers runs `seqknockd run` at 10,000 users x 2
// ports (period 2 s, so rotations come fast) with near_miss_periods = 0
// (the baseline), the default and 20, in the same run, each in a
// namespace of its own: the peak RSS once the index is built and the CPU
// of 5 rotations after one more, and prints the ratios to the baseline.
func BenchmarkNearMissRSS10kUsers(b *testing.B) {
	netnstest.RequireRoot(b)
	bin := netnstest.Build(b, "server/cmd/seqknockd")
	dir := b.TempDir()
	var users strings.Builder
	for i := 0; i < 10000; i++ {
		k := make([]byte, 32)
		rand.Read(k)
		name := fmt.Sprintf("u%d", i)
		os.WriteFile(filepath.Join(dir, name+".key"), []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600)
		fmt.Fprintf(&users, "[[user]]\nname = %q\nkey_file = %q\n", name, name+".key")
	}
	type result struct{ rss, cpu float64 }
	measure := func(periods int) result {
		cfg := filepath.Join(dir, fmt.Sprintf("c%d.toml", periods))
		os.WriteFile(cfg, []byte(fmt.Sprintf("period = \"2s\"\nnear_miss_periods = %d\n[[service]]\nport = 22\n[[service]]\nport = 2222\n%s", periods, users.String())), 0o600)
		ns := netnstest.New(b, "bnmr")
		cmd := ns.Command(bin, "--config", cfg, "run", "--state", filepath.Join(b.TempDir(), "s.json"))
		cmd.Env = append(os.Environ(), "SEQKNOCKD_RUNTIME_DIR="+filepath.Join(b.TempDir(), "run"))
		log := &netnstest.Buffer{}
		cmd.Stderr = log
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		wait := func(what string, cond func() bool) {
			deadline := time.Now().Add(90 * time.Second)
			for !cond() {
				if time.Now().After(deadline) || cmd.ProcessState != nil {
					b.Fatalf("%s: timed out:\n%s", what, log)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		wait("first sync", func() bool { return strings.Contains(log.String(), "msg=sync") })
		if periods > 0 {
			wait("index", func() bool { return strings.Contains(log.String(), "near-miss index built") })
		}
		// Settle: one more rotation after the start's work.
		n := strings.Count(log.String(), "msg=sync")
		wait("a rotation", func() bool { return strings.Count(log.String(), "msg=sync") >= n+1 })
		n = strings.Count(log.String(), "msg=sync")
		t0 := procTicks(b, cmd.Process.Pid)
		wait("5 rotations", func() bool { return strings.Count(log.String(), "msg=sync") >= n+5 })
		cpu := float64(procTicks(b, cmd.Process.Pid)-t0) / 100 // USER_HZ
		return result{vmHWM(b, cmd.Process.Pid), cpu}
	}
	for i := 0; i < b.N; i++ {
		off := measure(0)
		b.Logf("near_miss_periods = 0: peak RSS %.1f MiB, CPU %.2f s for 5 rotations", off.rss, off.cpu)
		for _, p := range []int{DefaultNearMissPeriods, 20} {
			on := measure(p)
			b.Logf("near_miss_periods = %d: peak RSS %.1f MiB (%.2fx off), CPU %.2f s for 5 rotations (%.2fx off)",
				p, on.rss, on.rss/off.rss, on.cpu, on.cpu/off.cpu)
		}
	}
}

// vmHWM is pid's peak RSS in MiB.
func vmHWM(b *testing.B, pid int) float64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) >= 2 && fs[0] == "VmHWM:" {
			kb, _ := strconv.Atoi(fs[1])
			return float64(kb) / 1024
		}
	}
	b.Fatal("no VmHWM")
	return 0
}

// procTicks is the user and system time pid used, in clock ticks.
func procTicks(b *testing.B, pid int) int {
	s, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(s[strings.LastIndexByte(string(s), ')')+1:]))
	u, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return u + st
}
