//go:build linux

package client

import "testing"

// TestSlotStoreWithoutHome: a user with no home and no $XDG_STATE_HOME
// gets a store that refuses to reserve, not one kept in memory: each
// seqknock run would start again at slot 0 and send a knock already sent
// in the period.
func TestSlotStoreWithoutHome(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "")
	for i := range 2 {
		s := (&Invoker{UID: 1000, GID: 1000}).SlotStore()
		if slot, err := s.Reserve("x", 100, 4); err == nil {
			t.Errorf("run %d: slot %d reserved without a place to keep it", i, slot)
		}
	}
}
