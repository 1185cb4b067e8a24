//go:build linux

package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/internal/netnstest"
	"github.com/seqknock/seqknock/totp"
)

// TestNearMissLogged runs the daemon's loop against a namespace's kernel
// and knocks from a client namespace: a client whose clock is 2 min ahead
// (ClockOffset, the client's --clock-offset), a knock for port 22 sent to
// port 2222, and a spent knock sent again each give, within 2 s of the
// knock, one log line naming the user and the cause (the skew in minutes,
// the ports, the source).
func TestNearMissLogged(t *testing.T) {
	b := newTestbed(t, 90)
	cfg := b.config(t, fmt.Sprintf(tbConfig, "30s", 1))
	log := &netnstest.Buffer{}
	d := &Daemon{
		ConfigPath: cfg.Path,
		Load:       LoadConfig,
		Kernel:     b.k,
		Now:        time.Now,
		Log:        slog.New(slog.NewTextHandler(log, nil)),
		StatePath:  freshStatePath(t, b.dir, cfg.Table),
		Audit:      &Auditor{Log: slog.New(slog.NewTextHandler(log, nil))},
		NearMiss:   &NearMiss{Log: slog.New(slog.NewTextHandler(log, nil))},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	waitFor(t, "first sync", func() bool { return strings.Contains(log.String(), "why=start") })
	// Stay inside one period: the replay below must stay in the window.
	if rest := time.Until(totp.NextBoundary(time.Now(), cfg.Period)); rest < 10*time.Second {
		time.Sleep(rest + 200*time.Millisecond)
	}
	// logged waits at most 2 s from start for a line with every one of want.
	logged := func(what string, start time.Time, want ...string) {
		t.Helper()
		for {
			for _, l := range strings.Split(log.String(), "\n") {
				ok := strings.Contains(l, "near miss")
				for _, w := range want {
					ok = ok && strings.Contains(l, w)
				}
				if ok {
					t.Logf("%s: %v after the knock: %s", what, time.Since(start).Round(time.Millisecond), l)
					return
				}
			}
			if time.Since(start) > 2*time.Second {
				t.Fatalf("%s: no near-miss line with %q within 2 s; log:\n%s", what, want, log.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	start := time.Now()
	ahead := client.Dialer{Key: aliceKey, Realm: "lab", ClockOffset: 2 * time.Minute, Reserve: fixedSlot(0)}
	if err := b.knock(t, b.cli, ahead, b.cl.A4, 22); !errors.Is(err, client.ErrNoAnswer) {
		t.Fatalf("a knock 2 min ahead: want no answer, got %v", err)
	}
	logged("clock 2 min ahead", start, "alice knocked 4 periods early", "about 2 min ahead", "cause=clock")

	c := totp.Counter(time.Now(), cfg.Period)
	der, err := totp.NewDeriver(aliceKey, "lab")
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	var derr error
	b.cli.Do(func() error { _, derr = dialISN(b.cl.A4, 2222, der.ISN(22, c, 1), 700*time.Millisecond); return nil })
	if derr == nil {
		t.Fatal("a port 22 knock was admitted on port 2222")
	}
	logged("another port", start, "alice used a port 22 knock on port 2222", "cause=port")

	spent := client.Dialer{Key: aliceKey, Realm: "lab", Reserve: fixedSlot(2)}
	if err := b.knock(t, b.cli, spent, b.cl.A4, 22); err != nil {
		t.Fatalf("the first knock was not admitted: %v", err)
	}
	waitFor(t, "the admission", func() bool { return strings.Contains(log.String(), "knock admitted") })
	start = time.Now()
	b.cli.Do(func() error { _, derr = dialISN(b.cl.A4, 22, der.ISN(22, c, 2), 700*time.Millisecond); return nil })
	if derr == nil {
		t.Fatal("a spent knock was admitted again")
	}
	logged("replay", start, "a spent knock of alice came again from "+b.cl.B4, "cause=replay")
}
