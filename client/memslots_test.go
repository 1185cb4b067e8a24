package client

import (
	"errors"
	"testing"
)

// TestMemorySlotStore: every dial takes the next slot of the period, none
// twice; a new period starts again at 0; ids are apart.
func TestMemorySlotStore(t *testing.T) {
	var s SlotStore
	for want := 0; want < 4; want++ {
		if got, err := s.Reserve("a", 7, 4); err != nil || got != want {
			t.Fatalf("reserve %d: %d, %v", want, got, err)
		}
	}
	if _, err := s.Reserve("a", 7, 4); !errors.Is(err, ErrSlotsSpent) {
		t.Fatalf("fifth reserve: %v, want ErrSlotsSpent", err)
	}
	if got, err := s.Reserve("b", 7, 4); err != nil || got != 0 {
		t.Fatalf("another id: %d, %v", got, err)
	}
	if got, err := s.Reserve("a", 8, 4); err != nil || got != 0 {
		t.Fatalf("next period: %d, %v", got, err)
	}
}
