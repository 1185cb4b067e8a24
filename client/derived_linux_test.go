//go:build linux

package client

import (
	"bytes"
	"testing"

	"github.com/seqknock/seqknock/totp"
)

// TestDialerReusesDerivedKeys: a Dialer dialing again with the same key
// slices, realm and port reuses the last dial's Derivers and slot ids
// (no key set-up a dial), which give what fresh ones give; anything
// changed, or a dial still holding them, gets new ones.
func TestDialerReusesDerivedKeys(t *testing.T) {
	old := bytes.Repeat([]byte{7}, len(testKey))
	d := &Dialer{Key: testKey, Fallback: [][]byte{old}, Realm: "r"}
	first, err := d.knockKeys(22)
	if err != nil {
		t.Fatal(err)
	}
	// Held by a dial: another dial meanwhile derives its own.
	if other, _ := d.knockKeys(22); other == first {
		t.Fatal("two dials at once share Derivers")
	}
	// A copy made now shares the cache, not what a dial holds.
	copied := *d
	copied.cache().last.Store(first)
	if k, _ := d.knockKeys(22); k != first {
		t.Fatal("a copy of the Dialer does not share its cache")
	}
	d.cache().last.Store(first)
	again, _ := d.knockKeys(22)
	if again != first {
		t.Fatal("the same keys, realm and port: derived again instead of reused")
	}
	fresh, _ := totp.NewDeriver(testKey, "r")
	for slot := uint8(0); slot < 3; slot++ {
		if got, want := again.derivers[0].ISN(22, 1000, slot), fresh.ISN(22, 1000, slot); got != want {
			t.Errorf("reused Deriver: ISN %d, want %d", got, want)
		}
	}
	if again.ids[0] != SlotID(testKey, "r", 22) || again.ids[1] != SlotID(old, "r", 22) {
		t.Error("reused slot ids differ from SlotID's")
	}
	for _, tc := range []struct {
		name   string
		change func()
		port   uint16
	}{
		{"nothing", func() {}, 22},
		{"port", func() {}, 2222},
		{"realm", func() { d.Realm = "s" }, 22},
		{"key replaced by an equal copy", func() { d.Key = append([]byte(nil), testKey...) }, 22},
		{"fallback added", func() { d.Fallback = append(d.Fallback, old) }, 22},
	} {
		d.Key, d.Fallback, d.Realm = again.keys[0], again.keys[1:], "r"
		d.cache().last.Store(again)
		tc.change()
		k, err := d.knockKeys(tc.port)
		if err != nil {
			t.Fatal(err)
		}
		if reused := k == again; reused != (tc.name == "nothing") {
			t.Errorf("%s changed: reused %v", tc.name, reused)
		}
	}
}
