package server

import (
	"fmt"
	"slices"
	"time"

	"github.com/seqknock/seqknock/nftgen"
	"github.com/seqknock/seqknock/totp"
)

// Status is what `seqknockd status` shows. Current is true when the table
// is installed, its rules are the ones this version builds for the config,
// it protects exactly the config's ports and holds knocks of exactly the
// config's users; otherwise Differences says, one item each, what is off.
type Status struct {
	Table        string         `json:"table"`
	Present      bool           `json:"present"`
	RulesCurrent bool           `json:"rules_current"`
	Current      bool           `json:"current"`
	Differences  []string       `json:"differences"`
	Ports        []uint16       `json:"ports"`
	Users        []string       `json:"users"`
	Valid        int            `json:"valid_elements"`
	Used         int            `json:"used_elements"`
	Admitted     nftgen.Counter `json:"admitted"`
	Dropped      nftgen.Counter `json:"dropped"`
	// Rejected counts unknocked packets answered with a reset, Lockout
	// the SYNs of locked-out sources dropped, LockedOut the sources
	// locked out now, Unknocked the unknocked packets per port.
	Rejected  nftgen.Counter            `json:"rejected"`
	Lockout   nftgen.Counter            `json:"lockout_dropped"`
	LockedOut int                       `json:"locked_out_sources"`
	Unknocked map[string]nftgen.Counter `json:"unknocked"`
	// Modes is each protected port's closed-port mode in the table:
	// "drop" or "reset"; GuessLimit, GlobalLimit and LookupLimit (the
	// locked-out sources' lookup budget) the limits the config sets ("0":
	// off), as "10/second+20".
	Modes map[string]string `json:"modes"`
	// Bound are the ports whose knocks the table holds bound to a source
	// port (48-bit knocks, bind_source_port), read from its elements.
	Bound         []uint16 `json:"bind_source_port"`
	GuessLimit    string   `json:"guess_limit"`
	GuessPrefix   string   `json:"guess_prefix"`
	GlobalLimit   string   `json:"guess_global_limit"`
	LookupLimit   string   `json:"lockout_lookup_limit"`
	Counter       uint64   `json:"counter"`
	NextRotationS float64  `json:"seconds_to_next_rotation"`
	// SignedListeners are the listeners of the signed services (sign =
	// "tcp-md5"), each with whether it signs with its service's key; one
	// that does not is a difference.
	SignedListeners []SignedListener `json:"signed_listeners"`
	// Listeners are the listeners of the protected ports, each with
	// whether it has the socket filter that drops a SYN the table did not
	// mark, and why not; one that does not is a difference. A port with
	// no listener is listed with an empty address.
	Listeners []LockedListener `json:"listeners"`
	// Daemon is the `seqknockd run` that keeps the table in force, when
	// the caller probed for it (ProbeDaemon).
	Daemon *DaemonState `json:"daemon,omitempty"`
}

// GetStatus reads the live table named by cfg and compares it with what
// cfg wants at now.
func GetStatus(k Kernel, cfg *Config, now time.Time) (*Status, error) {
	live, err := k.Table.Read(cfg.Table)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	st := CompareStatus(live, cfg, now)
	if st.SignedListeners, err = signedListeners(k, cfg); err != nil {
		return nil, err
	}
	for _, l := range st.SignedListeners {
		if !l.Signed {
			st.Differences = append(st.Differences, fmt.Sprintf("port %d listener %s is not signed (%s)", l.Port, l.Address, l.Mode))
		}
	}
	if st.Listeners, err = LockedListeners(k, cfg); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	st.Differences = append(st.Differences, lockDifferences(st.Listeners)...)
	st.Current = len(st.Differences) == 0
	return st, nil
}

// CompareStatus is the pure part of GetStatus: live against cfg at now.
func CompareStatus(live *nftgen.Live, cfg *Config, now time.Time) *Status {
	st := &Status{
		Table:           cfg.Table,
		Present:         live.Exists,
		RulesCurrent:    live.Exists && live.RulesCurrent && live.Rules == rules(cfg),
		Ports:           live.Ports,
		Valid:           live.ValidCount,
		Used:            live.UsedCount,
		Admitted:        live.Admitted,
		Dropped:         live.Dropped,
		Rejected:        live.Rejected,
		Lockout:         live.Lockout,
		LockedOut:       live.LockedOut,
		Unknocked:       map[string]nftgen.Counter{},
		Modes:           map[string]string{},
		GuessLimit:      cfg.Guess.String(),
		GuessPrefix:     fmt.Sprintf("/%d, /%d", cfg.GuessPrefix4, cfg.GuessPrefix6),
		GlobalLimit:     cfg.GuessGlobal.String(),
		LookupLimit:     cfg.LockoutLookup.String(),
		Counter:         totp.Counter(now, cfg.Period),
		NextRotationS:   totp.NextBoundary(now, cfg.Period).Sub(now).Seconds(),
		Differences:     []string{},
		SignedListeners: []SignedListener{},
	}
	if st.Ports == nil {
		st.Ports = []uint16{}
	}
	for _, u := range cfg.Users {
		st.Users = append(st.Users, u.Name)
	}
	bound := map[uint16]bool{}
	for _, k := range slices.Concat(live.ValidKeys, live.UsedKeys) {
		if k.SPort != 0 {
			bound[k.Port] = true
		}
	}
	st.Bound = []uint16{}
	for _, p := range live.Ports {
		if bound[p] {
			st.Bound = append(st.Bound, p)
		}
		mode := UnknockedDrop
		if slices.Contains(live.ResetPorts, p) {
			mode = UnknockedReset
		}
		st.Modes[fmt.Sprint(p)] = mode
		if c, ok := live.Unknocked[p]; ok {
			st.Unknocked[fmt.Sprint(p)] = c
		}
	}
	st.Differences = differences(live, cfg, now, st.RulesCurrent)
	st.Current = len(st.Differences) == 0
	return st
}

func differences(live *nftgen.Live, cfg *Config, now time.Time, rulesCurrent bool) []string {
	if !live.Exists {
		return []string{fmt.Sprintf("table inet %s is not installed", cfg.Table)}
	}
	diff := []string{}
	if live.Foreign != "" {
		diff = append(diff, fmt.Sprintf("table inet %s is not ours (%s); the next sync replaces it", cfg.Table, live.Foreign))
	}
	if !rulesCurrent {
		diff = append(diff, "the rules are not the ones this version writes for the config")
	}
	want := map[uint16]bool{}
	for _, svc := range cfg.Services {
		want[svc.Port] = true
		if !slices.Contains(live.Ports, svc.Port) {
			diff = append(diff, fmt.Sprintf("port %d is in the config but not protected", svc.Port))
		} else if reset := slices.Contains(live.ResetPorts, svc.Port); reset != (svc.Unknocked == UnknockedReset) {
			diff = append(diff, fmt.Sprintf("port %d is in %s mode, the config says %s", svc.Port, map[bool]string{true: UnknockedReset, false: UnknockedDrop}[reset], svc.Unknocked))
		}
	}
	for _, p := range live.Ports {
		if !want[p] {
			diff = append(diff, fmt.Sprintf("port %d is protected but not in the config", p))
		}
	}

	// Users: every user with an unexpired key must have knocks of the
	// window in the table (valid, or spent in used); every valid element
	// must be a knock of the config. Knocks of the previous period count
	// too, so a status read at a boundary, just before the daemon's sync,
	// is not a difference.
	inTable := make(map[nftgen.Key]bool, len(live.ValidKeys)+len(live.UsedKeys))
	for _, k := range slices.Concat(live.ValidKeys, live.UsedKeys) {
		inTable[k] = true
	}
	known := make(map[nftgen.Key]bool, len(live.ValidKeys))
	present := map[string]bool{}
	note := func(k Knock) {
		key := nftgen.Key{SPort: k.SPort, Port: k.Port, ISN: k.ISN}
		known[key] = true
		if inTable[key] {
			present[k.User] = true
		}
	}
	EachKnock(cfg, now, note)
	EachKnock(cfg, now.Add(-cfg.Period), note)
	ports := userPorts(cfg)
	for _, u := range cfg.Users {
		valid := slices.ContainsFunc(u.Keys, func(k UserKey) bool { return k.ValidAt(now) })
		if !present[u.Name] && valid && len(ports(u.Name)) > 0 {
			diff = append(diff, fmt.Sprintf("user %s has no knocks in the table", u.Name))
		}
	}
	foreign := 0
	for _, k := range live.ValidKeys {
		if !known[k] {
			foreign++
		}
	}
	if foreign > 0 {
		diff = append(diff, fmt.Sprintf("%d valid knocks are not from the config (a removed user or key, or another realm, period or port)", foreign))
	}
	return diff
}
