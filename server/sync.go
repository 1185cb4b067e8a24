package server

import (
	"fmt"
	"time"

	"github.com/seqknock/seqknock/nftgen"
	"github.com/seqknock/seqknock/totp"
)

// Sync makes the kernel hold the state cfg wants at now, in one transaction.
func Sync(k Kernel, cfg *Config, now time.Time) (nftgen.Result, error) {
	res, err := k.Apply(Desired(cfg, now), now)
	if err != nil {
		return res, fmt.Errorf("sync: %w", err)
	}
	return res, nil
}

// Desired returns the table state for cfg at now: for every service port,
// every user allowed on it, every counter of the window and every slot, one
// valid element that expires when its counter leaves the window. It is pure:
// the same config and time give the same state.
func Desired(cfg *Config, now time.Time) nftgen.State {
	window := totp.Window(now, cfg.Period, cfg.Tolerance, cfg.Lookahead)
	s := nftgen.State{
		Table:       cfg.Table,
		Rules:       rules(cfg),
		UsedTimeout: cfg.WindowLength(),
	}
	perPort := map[uint16]map[string]bool{}
	for _, svc := range cfg.Services {
		s.Ports = append(s.Ports, svc.Port)
		if len(svc.Users) > 0 {
			allowed := map[string]bool{}
			for _, u := range svc.Users {
				allowed[u] = true
			}
			perPort[svc.Port] = allowed
		}
	}
	n := 0
	for _, svc := range cfg.Services {
		if a := perPort[svc.Port]; a != nil {
			n += len(a)
		} else {
			n += len(cfg.Users)
		}
	}
	s.Valid = make([]nftgen.Element, 0, n*len(window)*cfg.Slots)
	for _, u := range cfg.Users {
		d, err := totp.NewDeriver(u.Key, cfg.Realm)
		if err != nil {
			continue // LoadConfig checked every key; unreachable
		}
		for _, svc := range cfg.Services {
			if a := perPort[svc.Port]; a != nil && !a[u.Name] {
				continue
			}
			for _, e := range window {
				for slot := 0; slot < cfg.Slots; slot++ {
					s.Valid = append(s.Valid, nftgen.Element{
						Port:    svc.Port,
						ISN:     d.ISN(svc.Port, e.Counter, uint8(slot)),
						Expires: e.Expires,
					})
				}
			}
		}
	}
	return s
}

// rules returns the parameters of the rules cfg wants.
func rules(cfg *Config) nftgen.Rules {
	return nftgen.Rules{MarkBit: cfg.MarkBit()}
}
