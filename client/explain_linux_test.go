//go:build linux

package client

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// TestSlotsSpentSaysWhen: with every slot of the period spent, Dial says so
// with the time to the next period, read from the (fake) clock, names
// connection sharing, and sends nothing.
func TestSlotsSpentSaysWhen(t *testing.T) {
	period := 30 * time.Second
	start := time.Unix(58812345*30, 0) // a period boundary
	for _, tc := range []struct {
		into time.Duration
		want string
	}{
		{13 * time.Second, "all 4 knocks of this period are spent; the next period starts in 17 s"},
		{13*time.Second + 500*time.Millisecond, "all 4 knocks of this period are spent; the next period starts in 17 s"},
		{29*time.Second + time.Millisecond, "all 4 knocks of this period are spent; the next period starts in 1 s"},
		{0, "all 4 knocks of this period are spent; the next period starts in 30 s"},
	} {
		attempts := 0
		d := &Dialer{Key: testKey, Period: period, Slots: 4,
			Now:             func() time.Time { return start.Add(tc.into) },
			CheckCapability: func() error { return nil },
			Resolve: func(context.Context, string, string) ([]netip.Addr, error) {
				return []netip.Addr{netip.MustParseAddr("198.18.0.1")}, nil
			},
			Reserve: func(string, uint64, int) (int, error) {
				return 0, fmt.Errorf("slot state: %w (4 slots)", ErrSlotsSpent)
			},
			OnAttempt: func(netip.AddrPort, uint64, int, uint32) { attempts++ },
		}
		_, err := d.Dial(context.Background(), "h", 22)
		const share = " (ssh runs that share one connection need one knock: ControlMaster auto with ControlPersist, as seqknock ssh-config prints)"
		if err == nil || err.Error() != tc.want+share || !errors.Is(err, ErrSlotsSpent) {
			t.Errorf("%v into the period: %v, want %q", tc.into, err, tc.want)
		}
		if attempts != 0 {
			t.Errorf("%d attempts", attempts)
		}
	}
}

// TestCapabilityBeforeSlots: a Dialer that may not set the ISN says so
// before it reserves a slot.
func TestCapabilityBeforeSlots(t *testing.T) {
	reserved := 0
	d := &Dialer{Key: testKey,
		CheckCapability: func() error { return ErrNoCapability },
		Resolve: func(context.Context, string, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("198.18.0.1")}, nil
		},
		Reserve: func(string, uint64, int) (int, error) { reserved++; return 0, nil },
	}
	if _, err := d.Dial(context.Background(), "h", 22); !errors.Is(err, ErrNoCapability) || reserved != 0 {
		t.Errorf("err %v, %d slots reserved", err, reserved)
	}
}

// TestNoCapabilitySpendsNoSlot runs seqknock proxy as nobody, without the
// capability, more times than there are slots: each run says the
// capability is missing, and no slot state is written.
func TestNoCapabilitySpendsNoSlot(t *testing.T) {
	netnstest.RequireRoot(t, "setpriv")
	ns := netnstest.New(t, "nocap")
	bin := netnstest.Build(t, "client/cmd/seqknock")
	dir, err := os.MkdirTemp("", "seqknock-nocap-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	kf := filepath.Join(dir, "key")
	os.WriteFile(kf, []byte(base64.StdEncoding.EncodeToString(testKey)+"\n"), 0o600)
	os.Chown(kf, 65534, 65534)
	os.Chown(dir, 65534, 65534)
	os.Chmod(dir, 0o755)
	for i := 0; i < 6; i++ {
		cmd := ns.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
			bin, "proxy", "--key-file", kf, "198.18.0.1", "22")
		cmd.Env = []string{"HOME=" + dir, "PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "needs CAP_NET_ADMIN") {
			t.Fatalf("run %d: %v: %s", i+1, err, out)
		}
	}
	if state, _ := filepath.Glob(filepath.Join(dir, ".local", "state", "seqknock", "*")); len(state) > 0 {
		t.Errorf("slot state written: %v", state)
	}
}

// TestAddressesUnmapped: an IPv4 address the resolver hands back in its
// IPv6-mapped form is dialled and reported as IPv4. The attempt is
// cancelled before it sends anything.
func TestAddressesUnmapped(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []string
	d := &Dialer{Key: testKey,
		CheckCapability: func() error { return nil },
		Resolve: func(context.Context, string, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("::ffff:198.18.77.1")}, nil
		},
		Reserve:   func(string, uint64, int) (int, error) { return 0, nil },
		OnAttempt: func(ap netip.AddrPort, _ uint64, _ int, _ uint32) { got = append(got, ap.String()); cancel() },
	}
	_, err := d.Dial(ctx, "h", 22)
	if len(got) != 1 || got[0] != "198.18.77.1:22" || err == nil || strings.Contains(err.Error(), "::ffff:") {
		t.Errorf("attempts %v, error %v", got, err)
	}
}
