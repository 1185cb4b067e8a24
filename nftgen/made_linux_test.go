//go:build linux

package nftgen

import "testing"

// TestLiveShapeNotWhole: a table that is missing, has rules of another
// version or no used set has no shape AddValid can add to.
func TestLiveShapeNotWhole(t *testing.T) {
	whole := Live{Exists: true, RulesCurrent: true, UsedExists: true}
	if _, ok := liveShape("seqknock", &whole); !ok {
		t.Fatal("a whole table has no shape")
	}
	for name, mut := range map[string]func(*Live){
		"no table":    func(l *Live) { l.Exists = false },
		"other rules": func(l *Live) { l.RulesCurrent = false },
		"no used set": func(l *Live) { l.UsedExists = false },
	} {
		l := whole
		mut(&l)
		if _, ok := liveShape("seqknock", &l); ok {
			t.Errorf("%s: liveShape says whole", name)
		}
	}
}
