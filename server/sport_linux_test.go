//go:build linux

package server

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/totp"
)

// TestBindSourcePort: with bind_source_port on port 22, a client that
// binds its knock's source port connects; the exact ISN of an unspent knock
// sent from another source port is dropped (and leaves the knock unspent);
// the knock, once used, is dropped from another address too; a knock whose
// source port is busy at the client moves to the next slot and connects.
// Port 2222, unbound, still takes a plain knock from any source port, and
// a bound one.
func TestBindSourcePort(t *testing.T) {
	b := newTestbed(t, 246)
	cfg := b.config(t, strings.Replace(fmt.Sprintf(tbConfig, "30s", 1), "port = 22\n", "port = 22\nbind_source_port = true\n", 1))
	b.sync(t, cfg)
	at := time.Now()
	bound := client.Dialer{Key: aliceKey, Realm: "lab", Now: func() time.Time { return at }, BindSourcePort: true}
	plain := bound
	plain.BindSourcePort = false

	// Slot 0's exact ISN from a port the kernel picks: dropped.
	if err := b.knock(t, b.cli, plain, b.cl.A4, 22); !errors.Is(err, client.ErrNoAnswer) {
		t.Fatalf("the knock's ISN from another source port: %v, want no answer", err)
	}
	// The same knock from its own source port: admitted (the stray SYN
	// spent nothing).
	if err := b.knock(t, b.cli, bound, b.cl.A4, 22); err != nil {
		t.Fatalf("bound knock: %v", err)
	}
	// Replayed with its source port from another address: used_sp has it.
	if err := b.knock(t, b.atk, bound, b.al.A4, 22); !errors.Is(err, client.ErrNoAnswer) || !strings.Contains(err.Error(), "bind_source_port is on") {
		t.Fatalf("replay from another address: %v, want no answer naming bind_source_port", err)
	}
	// An unbound service is unchanged, and admits a client that binds
	// (the order to turn it on in: clients first).
	if err := b.knock(t, b.cli, plain, b.cl.A4, 2222); err != nil {
		t.Fatalf("unbound port: %v", err)
	}
	early := bound
	early.Reserve = fixedSlot(1)
	if err := b.knock(t, b.cli, early, b.cl.A4, 2222); err != nil {
		t.Fatalf("a binding client at an unbound port: %v", err)
	}

	// Slot 1's source port busy at the client: the dial says so and
	// knocks with slot 2.
	d, _ := totp.NewDeriver(aliceKey, "lab")
	counter := totp.Counter(at, 30*time.Second)
	busy := d.SourcePort(22, counter, 1)
	var ln net.Listener
	if err := b.cli.Do(func() (err error) { ln, err = net.Listen("tcp", fmt.Sprintf(":%d", busy)); return }); err != nil {
		t.Fatalf("occupy port %d: %v", busy, err)
	}
	defer ln.Close()
	next := 1
	var skipped []int
	two := bound
	two.Slots = 4
	two.Reserve = func(string, uint64, int) (int, error) { next++; return next - 1, nil }
	two.OnPortBusy = func(sport uint16, _ uint64, slot int) {
		if sport != busy {
			t.Errorf("busy port %d, want %d", sport, busy)
		}
		skipped = append(skipped, slot)
	}
	if err := b.knock(t, b.cli, two, b.cl.A4, 22); err != nil {
		t.Fatalf("with slot 1's port busy: %v", err)
	}
	if fmt.Sprint(skipped) != "[1]" || next != 3 {
		t.Errorf("skipped slots %v, next %d: want [1] and slot 2 used", skipped, next)
	}
}
