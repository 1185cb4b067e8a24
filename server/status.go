package server

import (
	"fmt"
	"time"

	"github.com/seqknock/seqknock/nftgen"
	"github.com/seqknock/seqknock/totp"
)

// Status is what `seqknockd status` shows.
type Status struct {
	Table         string         `json:"table"`
	Present       bool           `json:"present"`
	RulesCurrent  bool           `json:"rules_current"`
	Ports         []uint16       `json:"ports"`
	Users         []string       `json:"users"`
	Valid         int            `json:"valid_elements"`
	Used          int            `json:"used_elements"`
	Admitted      nftgen.Counter `json:"admitted"`
	Dropped       nftgen.Counter `json:"dropped"`
	Counter       uint64         `json:"counter"`
	NextRotationS float64        `json:"seconds_to_next_rotation"`
}

// GetStatus reads the live table named by cfg.
func GetStatus(k Kernel, cfg *Config, now time.Time) (*Status, error) {
	live, err := k.Read(cfg.Table)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	st := &Status{
		Table:         cfg.Table,
		Present:       live.Exists,
		RulesCurrent:  live.RulesCurrent && live.Rules == rules(cfg),
		Ports:         live.Ports,
		Valid:         live.ValidCount,
		Used:          live.UsedCount,
		Admitted:      live.Admitted,
		Dropped:       live.Dropped,
		Counter:       totp.Counter(now, cfg.Period),
		NextRotationS: totp.NextBoundary(now, cfg.Period).Sub(now).Seconds(),
	}
	if st.Ports == nil {
		st.Ports = []uint16{}
	}
	for _, u := range cfg.Users {
		st.Users = append(st.Users, u.Name)
	}
	return st, nil
}
