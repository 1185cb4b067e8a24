//go:build linux

package server

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/internal/netnstest"
)

// TestKeyRotation runs the README's rotation against the kernel, with
// `seqknockd run`'s loop in process: while both keys are listed, knocks of
// both are admitted (and a client preferring the new key uses it); at the
// old key's not_after the kernel drops its knocks by itself, before any
// sync; the next sync leaves the old key out and logs it once; a session
// opened with the old key keeps flowing.
func TestKeyRotation(t *testing.T) {
	b := newTestbed(t, 150)
	newKey := []byte("alice-new-key-0123456789abcdefgh")
	os.WriteFile(filepath.Join(b.dir, "alice-new.key"), []byte(base64.StdEncoding.EncodeToString(newKey)+"\n"), 0o600)
	now := time.Now()
	if rest := now.Truncate(30 * time.Second).Add(30 * time.Second).Sub(now); rest < 8*time.Second {
		time.Sleep(rest + 100*time.Millisecond) // one period for the whole overlap
		now = time.Now()
	}
	notAfter := now.Add(3 * time.Second).Truncate(time.Second).Add(time.Second)
	text := fmt.Sprintf(`realm = "lab"
[[service]]
port = 22
[[user]]
name = "alice"
key_files = ["alice-new.key", { file = "alice.key", not_after = %s }]
`, notAfter.UTC().Format(time.RFC3339))
	path := filepath.Join(b.dir, "seqknockd.toml")
	os.WriteFile(path, []byte(text), 0o600)
	log := &netnstest.Buffer{}
	d := &Daemon{ConfigPath: path, Load: LoadConfig, Kernel: b.k, Now: time.Now, Log: slog.New(slog.NewTextHandler(log, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	reload := make(chan os.Signal, 1)
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, reload) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "first sync", func() bool { return strings.Contains(log.String(), "msg=sync") })

	old := client.Dialer{Key: aliceKey, Realm: "lab"}
	neu := client.Dialer{Key: newKey, Realm: "lab"}
	knock := func(d client.Dialer, slot int) error {
		d.Reserve = fixedSlot(slot)
		return b.knock(t, b.cli, d, b.cl.A4, 22)
	}
	// Overlap: both keys knock.
	if err := knock(old, 0); err != nil {
		t.Fatalf("old key during the overlap: %v", err)
	}
	if err := knock(neu, 0); err != nil {
		t.Fatalf("new key during the overlap: %v", err)
	}
	// A client with the new key preferred and the old as fallback knocks
	// with the new one.
	var tries []uint32
	both := client.Dialer{Key: newKey, Fallback: [][]byte{aliceKey}, Realm: "lab", Slots: 4,
		OnAttempt: func(_ netip.AddrPort, _ uint64, _ int, isn uint32) { tries = append(tries, isn) }}
	if err := knock(both, 1); err != nil || len(tries) != 1 {
		t.Fatalf("new key preferred: %v after %d attempts", err, len(tries))
	}
	// A session of the old key, open across the expiry.
	var sess *net.TCPConn
	old.Reserve, old.Resolve, old.Slots = fixedSlot(2), literal, 1
	if err := b.cli.Do(func() (err error) { sess, err = old.Dial(context.Background(), b.cl.A4, 22); return }); err != nil {
		t.Fatalf("old key's session: %v", err)
	}
	defer sess.Close()
	var srvSide net.Conn
	select {
	case srvSide = <-b.accepted:
		defer srvSide.Close()
	case <-time.After(3 * time.Second):
		t.Fatal("old key's session not accepted")
	}
	echo := func(when string) {
		t.Helper()
		sess.Write([]byte("p"))
		buf := make([]byte, 1)
		srvSide.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := srvSide.Read(buf); err != nil {
			t.Errorf("old key's session %s: %v", when, err)
		}
	}
	echo("during the overlap")

	// Past not_after, before any sync: the kernel has dropped the old
	// key's knocks by their own expiry.
	time.Sleep(time.Until(notAfter) + 200*time.Millisecond)
	if strings.Count(log.String(), "msg=sync") != 1 {
		t.Fatalf("a sync ran during the overlap; the test wants the kernel's own expiry:\n%s", log)
	}
	if err := knock(old, 3); !errors.Is(err, client.ErrNoAnswer) {
		t.Errorf("old key after not_after, before a sync: %v, want no answer", err)
	}
	// The next sync leaves the old key out and says so once.
	for i := 0; i < 2; i++ {
		reload <- os.Interrupt
		waitFor(t, "reload sync", func() bool { return strings.Count(log.String(), "why=reload") == i+1 })
	}
	if n := strings.Count(log.String(), "key expired"); n != 1 {
		t.Errorf("%d expiry lines, want 1:\n%s", n, log)
	}
	if err := knock(old, 1); !errors.Is(err, client.ErrNoAnswer) {
		t.Errorf("old key after the sync: %v, want no answer", err)
	}
	if err := knock(neu, 2); err != nil {
		t.Errorf("new key after not_after: %v", err)
	}
	echo("after not_after")
}
