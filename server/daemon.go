package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/seqknock/seqknock/totp"
)

// Daemon is `seqknockd run`: it syncs at every period boundary, reloads on
// SIGHUP and stops on SIGTERM.
type Daemon struct {
	ConfigPath string
	Load       func(path string) (*Config, error)
	Kernel     Kernel
	Now        func() time.Time
	Log        *slog.Logger
	// TeardownOnExit removes the table when Run returns; by default the
	// table stays and its knocks expire by themselves (fail closed).
	TeardownOnExit bool

	cfg                    *Config
	lastAdmit, lastDropped uint64
	expiredLogged          map[string]bool
}

// Run syncs now and then at every period boundary until ctx ends. A value on
// reload makes it reload the config and keys: a bad new config is logged and
// the old one kept. A failed sync is logged and retried at the next
// boundary; the knocks already installed expire on their own meanwhile.
func (d *Daemon) Run(ctx context.Context, reload <-chan os.Signal) error {
	cfg, err := d.Load(d.ConfigPath)
	if err != nil {
		return err
	}
	d.cfg = cfg
	if err := d.sync("start"); err != nil {
		return err
	}
	timer := time.NewTimer(d.untilNext())
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return d.exit()
		case <-reload:
			cfg, err := d.Load(d.ConfigPath)
			if err != nil {
				d.Log.Error("reload failed, keeping the previous config", "err", err)
				continue
			}
			if cfg.Table != d.cfg.Table {
				d.Log.Warn("table renamed; the old table stays until `seqknockd teardown --table` removes it", "old", d.cfg.Table, "new", cfg.Table)
			}
			d.cfg = cfg
			d.lastAdmit, d.lastDropped = 0, 0
			d.Log.Info("config reloaded", "users", len(cfg.Users), "services", len(cfg.Services))
			d.sync("reload")
		case <-timer.C:
			d.sync("rotate")
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(d.untilNext())
	}
}

func (d *Daemon) untilNext() time.Duration {
	now := d.Now()
	return totp.NextBoundary(now, d.cfg.Period).Sub(now)
}

// sync runs one sync and logs one line: what was written and how many knocks
// were admitted and dropped since the last line.
func (d *Daemon) sync(why string) error {
	now := d.Now()
	res, err := Sync(d.Kernel, d.cfg, now)
	if err != nil {
		d.Log.Error("sync failed", "why", why, "err", err)
		return err
	}
	attrs := []any{"why", why, "counter", totp.Counter(now, d.cfg.Period), "elements", res.Elements}
	if res.Created {
		attrs = append(attrs, "created", true)
	}
	if res.RulesRebuilt {
		attrs = append(attrs, "rules_rebuilt", true)
	}
	if live, err := d.Kernel.Counters(d.cfg.Table); err == nil {
		a, dr := live.Admitted.Packets, live.Dropped.Packets
		if a < d.lastAdmit || dr < d.lastDropped || res.RulesRebuilt {
			d.lastAdmit, d.lastDropped = 0, 0 // counters were reset
		}
		attrs = append(attrs, "admitted", a-d.lastAdmit, "dropped", dr-d.lastDropped)
		d.lastAdmit, d.lastDropped = a, dr
	}
	d.Log.Info("sync", attrs...)
	d.logExpired(now)
	return nil
}

// logExpired logs, once each, the keys that have passed their not_after:
// the sync just applied left them out.
func (d *Daemon) logExpired(now time.Time) {
	for _, k := range ExpiredKeys(d.cfg, now) {
		if d.expiredLogged[k] {
			continue
		}
		if d.expiredLogged == nil {
			d.expiredLogged = map[string]bool{}
		}
		d.expiredLogged[k] = true
		d.Log.Warn("key expired; its knocks are no longer valid", "key", k)
	}
}

func (d *Daemon) exit() error {
	if !d.TeardownOnExit {
		d.Log.Info("stopping; the table stays and its knocks expire by themselves", "table", d.cfg.Table)
		return nil
	}
	if _, err := d.Kernel.Teardown(d.cfg.Table); err != nil {
		return fmt.Errorf("teardown on exit: %w", err)
	}
	d.Log.Info("stopping; table removed", "table", d.cfg.Table)
	return nil
}
