package server

import (
	"context"
	"os"
	"time"

	"github.com/seqknock/seqknock/admitlog"
)

// What `seqknockd run` tells the other commands and the log about itself:
// its info file (pid, start, last sync, recent admissions; see
// DaemonInfo) and the near-miss diagnosis of the sampled drops. The
// Daemon calls these hooks from its loop.

// startTruth starts the near-miss worker and the daemon info: the
// admissions of the info a previous run left are kept.
func (d *Daemon) startTruth(ctx context.Context) {
	if d.NearMiss != nil {
		go d.NearMiss.Run(ctx)
		if d.Metrics != nil {
			d.Metrics.NearMisses = d.NearMiss.Counts
		}
	}
	if d.InfoFile == nil {
		return
	}
	if path, err := d.InfoFile(d.cfg.Table); err == nil {
		if old, err := ReadInfo(path); err == nil {
			d.info = *old
		}
	}
	d.info.Pid, d.info.Table, d.info.Started = os.Getpid(), d.cfg.Table, d.Now()
	d.info.LastSync, d.info.LastError = time.Time{}, "" // the previous run's
}

// afterSync records a sync that ended with err, and moves the near-miss
// index to the daemon's clock.
func (d *Daemon) afterSync(err error) {
	if d.NearMiss != nil && err == nil {
		d.NearMiss.Update(d.cfg, d.clock())
	}
	d.info.Synced(d.Now(), err)
	d.writeInfo()
}

// noteDrop hands a sampled dropped SYN to the near-miss diagnosis, with
// whether its knock is held as spent.
func (d *Daemon) noteDrop(p admitlog.Admission) {
	if d.NearMiss == nil || d.cfg.NearMissPeriods == 0 {
		return
	}
	var sport uint16
	if boundPorts(d.cfg)[p.Dst.Port()] {
		sport = p.Src.Port()
	}
	_, spent := d.state.Spent.m[spentKey(sport, p.Dst.Port(), p.Seq)]
	d.NearMiss.Sample(p.Src.Addr(), p.Dst.Port(), p.Seq, d.clock(), spent)
}

// writeInfo writes the daemon info file, when there is one; a failure is
// logged, never fatal.
func (d *Daemon) writeInfo() {
	if d.InfoFile == nil {
		return
	}
	path, err := d.InfoFile(d.cfg.Table)
	if err == nil {
		d.info.Table = d.cfg.Table
		err = WriteInfo(path, &d.info)
	}
	if err != nil && !d.infoFailed {
		d.Log.Warn("cannot write the daemon info file; status cannot show the last sync", "err", err)
	}
	d.infoFailed = err != nil
}
