package server

import (
	"cmp"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// SignCheck is how often `seqknockd run` checks the listeners of signed
// services, so a restarted service's new listener gets its key within
// about this long (and at every sync).
const SignCheck = time.Second

// SignedListener is one listener of a signed service, as status shows it.
type SignedListener struct {
	Port    uint16 `json:"port"`
	Mode    string `json:"mode"`
	Address string `json:"address"`
	Signed  bool   `json:"signed"`
}

// ListenerState is what Listeners.Sign found or did for one
// listener; it never holds a key.
type ListenerState struct {
	Local netip.AddrPort
	Inode uint32
	// UID is the socket's owner, the user that created it.
	UID uint32
	PID int
	// Signed: the listener signs with the service's key; Changed: it got
	// the key just now.
	Signed, Changed bool
	Err             error
}

// signedListeners lists the listeners of cfg's signed services with
// whether each signs with its service's key, sorted by port and address.
func signedListeners(k Kernel, cfg *Config) ([]SignedListener, error) {
	out := []SignedListener{}
	for _, svc := range cfg.Services {
		if svc.Sign == "" {
			continue
		}
		ls, err := k.Listeners.List(svc.Port, svc.SignKey)
		if err != nil {
			return nil, fmt.Errorf("status: %w", err)
		}
		for _, l := range ls {
			out = append(out, SignedListener{Port: svc.Port, Mode: svc.Sign, Address: l.Local.String(), Signed: l.Signed})
		}
	}
	slices.SortStableFunc(out, func(x, y SignedListener) int {
		return cmp.Or(cmp.Compare(x.Port, y.Port), strings.Compare(x.Address, y.Address))
	})
	return out, nil
}

// signServices puts each signed service's key on its listeners that lack
// it, logging each listener once when it gets the key and once for each
// new reason it cannot.
func (d *Daemon) signServices() {
	if d.signLogged == nil {
		d.signLogged = map[string]string{}
	}
	seen := map[string]bool{}
	for _, svc := range d.cfg.Services {
		if svc.Sign == "" {
			continue
		}
		states, err := d.Kernel.Listeners.Sign(svc.Port, svc.SignKey)
		if err != nil {
			d.logSignOnce(fmt.Sprintf("%d", svc.Port), err.Error(), seen, func() {
				d.Log.Error("cannot list the listeners to sign", "port", svc.Port, "err", err)
			})
			continue
		}
		for _, st := range states {
			id := fmt.Sprintf("%d/%d", svc.Port, st.Inode)
			switch {
			case st.Changed:
				seen[id] = true
				d.signLogged[id] = ""
				d.Log.Info("listener signed", "port", svc.Port, "listener", st.Local.String(), "pid", st.PID, "mode", svc.Sign)
			case st.Err != nil:
				d.logSignOnce(id, st.Err.Error(), seen, func() {
					d.Log.Error("cannot sign listener; connections to it are not signed", "port", svc.Port, "listener", st.Local.String(), "err", st.Err)
				})
			default:
				seen[id] = true
			}
		}
	}
	for id := range d.signLogged {
		if !seen[id] {
			delete(d.signLogged, id)
		}
	}
}

// logSignOnce runs log unless the same problem was logged for id last
// time.
func (d *Daemon) logSignOnce(id, problem string, seen map[string]bool, log func()) {
	seen[id] = true
	if prev, ok := d.signLogged[id]; ok && prev == problem {
		return
	}
	d.signLogged[id] = problem
	log()
}

// SignOnce puts each signed service's key on its listeners that lack it,
// once (seqknockd sync), logging what it did and what it could not do.
// It returns an error when a listener of a signed service stays unsigned.
func SignOnce(k Kernel, cfg *Config, log *slog.Logger) error {
	d := &Daemon{Kernel: k, cfg: cfg, Log: log}
	d.signServices()
	for _, problem := range d.signLogged {
		if problem != "" {
			return fmt.Errorf("sign: a listener of a signed service stays unsigned (see the log)")
		}
	}
	return nil
}
