//go:build linux

package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/seqknock/seqknock/client/broker"
	"github.com/seqknock/seqknock/tcpsign"
	"github.com/seqknock/seqknock/totp"
	"github.com/seqknock/seqknock/totp/keyfile"
)

// DefaultSynTimeout is how long one knock waits for a SYN-ACK. A dropped
// knock is silence, so this is short; the kernel sends the SYN again
// after 1 s within it, so one lost SYN or SYN-ACK costs no knock.
const DefaultSynTimeout = 3 * time.Second

// DefaultAttempts is how many knocks of each key one dial sends: one, so
// a knock that is dropped for a reason another slot would not change (a
// wrong key, a skewed clock) is reported after one SynTimeout and spends
// one slot of the period, not all of them.
const DefaultAttempts = 1

// ErrNoAnswer is wrapped by Dial's error when no knock got a SYN-ACK.
var ErrNoAnswer = errors.New("the knock was dropped or the host is down")

// Dialer opens TCP connections whose SYN carries a knock. It may be used
// by several goroutines at once. To change a key, assign another slice:
// a dial reuses what the last one derived from the same key slices.
type Dialer struct {
	Key []byte
	// Fallback are older keys to knock with when Key's knock gets no
	// answer, during a key rotation: attempts alternate between the keys,
	// preferred first, each spending a slot of its own key.
	Fallback [][]byte
	Realm    string
	// Period and Slots must match the server's; zero means the defaults.
	Period time.Duration
	Slots  int
	// SynTimeout bounds each attempt; Timeout bounds the whole dial
	// (0: no bound beyond the attempts).
	SynTimeout time.Duration
	// Attempts is how many knocks of each key a dial sends, each on a
	// slot of its own, before it gives up (0: DefaultAttempts); a knock
	// whose source port is in use here (BindSourcePort) is not sent and
	// does not count.
	Attempts int
	Timeout  time.Duration
	// ClockOffset is added to the clock, to correct a known skew.
	ClockOffset time.Duration
	// Network is "tcp", "tcp4" or "tcp6".
	Network string
	// SignKey, when set, signs the connection with TCP-MD5 (RFC 2385):
	// the socket gets the key for the server's address before connect(),
	// so its SYN and every later segment carry the MD5 option, and
	// segments from the server without it are dropped.
	SignKey tcpsign.Key
	// BindSourcePort binds each knock's socket, before its SYN, to the
	// source port ISN-v1 reserves for the knock (the server's service has
	// bind_source_port): a 48-bit knock. Where that port is in use here,
	// the knock is not sent and the next slot is tried.
	BindSourcePort bool

	// Seams; nil means the real thing.
	Now     func() time.Time
	Resolve func(ctx context.Context, network, host string) ([]netip.Addr, error)
	Reserve func(id string, counter uint64, slots int) (int, error) // next free slot
	// Admitted, when set, is told that a knock of id for counter got in;
	// LastAdmitted, when set, says the last counter for which one did
	// (0: none known). Dial uses them to tell a key that never worked
	// from one that did, when a knock gets no answer (SlotStore.Admit,
	// SlotStore.LastAdmitted).
	Admitted     func(id string, counter uint64) error
	LastAdmitted func(id string) uint64
	// Warnf, when set, is told of a collision Dial saw although it got
	// in: a knock timed out and the next slot's got in at once.
	Warnf func(format string, a ...any)
	// CheckCapability runs before any slot is reserved or packet sent
	// (default: CheckCapability).
	CheckCapability func() error
	// SetISN binds an unbound, unconnected socket to source port sport
	// when that is not 0 (BindSourcePort) and sets its ISN (default:
	// TCP_REPAIR in this process; a broker.Client's SetISNFrom asks the
	// broker, which binds every socket). A port in use fails with an error
	// that wraps syscall.EADDRINUSE. With CheckCapability nil, Dial picks
	// it: this process when it holds CAP_NET_ADMIN, else the broker at
	// Broker when it answers.
	SetISN func(fd int, isn uint32, sport uint16) error
	// Broker is the broker's socket (default broker.DefaultPath).
	Broker string
	// OnBroker is told when the broker sets the ISNs of this dial.
	OnBroker  func(path string)
	OnAttempt func(addr netip.AddrPort, counter uint64, slot int, isn uint32)
	// OnPortBusy is told when a knock's source port is in use here, so
	// its slot is skipped (BindSourcePort).
	OnPortBusy func(sport uint16, counter uint64, slot int)

	// derived holds a *derivedCache, made by the first dial: what the
	// last dial derived from the keys (their HMAC states and slot ids),
	// so a Dialer used again spends no key set-up on them (knockKeys). A
	// copy of a Dialer made after that shares it, which is safe: one dial
	// at a time takes what it holds. (An atomic.Value, unlike
	// atomic.Pointer, leaves the Dialer a value that may be copied.)
	derived atomic.Value
}

// derivedCache holds the derivedKeys no dial is using, or nil, and the
// slots the Dialer's dials used when it has no Reserve: a Dialer used
// twice in a period must not send the same knock twice.
type derivedCache struct {
	last  atomic.Pointer[derivedKeys]
	slots SlotStore
}

// cache returns d's derivedCache, making it on first use.
func (d *Dialer) cache() *derivedCache {
	if c, ok := d.derived.Load().(*derivedCache); ok {
		return c
	}
	d.derived.CompareAndSwap(nil, new(derivedCache))
	return d.derived.Load().(*derivedCache)
}

// derivedKeys is what a dial derives from a Dialer's keys for one port:
// per key (Key, then Fallback) its Deriver and slot id. It is used by one
// dial at a time (a Deriver is not safe for concurrent use), and only for
// the same port, realm and key slices: the same backing arrays, lengths
// and order. A Key replaced by another slice is derived anew; bytes
// changed in place are not seen.
type derivedKeys struct {
	keys     [][]byte
	realm    string
	port     uint16
	derivers []*totp.Deriver
	ids      []string
}

func (k *derivedKeys) matches(keys [][]byte, realm string, port uint16) bool {
	if k == nil || k.realm != realm || k.port != port || len(k.keys) != len(keys) {
		return false
	}
	for i, key := range keys {
		if len(key) == 0 || len(k.keys[i]) != len(key) || &k.keys[i][0] != &key[0] {
			return false
		}
	}
	return true
}

// knockKeys returns the Derivers and slot ids of d's keys for port: the
// last dial's when nothing changed and no other dial holds them, else
// new ones. Done with them, the dial hands them back (d.cache().last).
func (d *Dialer) knockKeys(port uint16) (*derivedKeys, error) {
	keys := append([][]byte{d.Key}, d.Fallback...)
	if k := d.cache().last.Swap(nil); k.matches(keys, d.Realm, port) {
		return k, nil
	}
	k := &derivedKeys{keys: keys, realm: d.Realm, port: port}
	for _, key := range keys {
		deriver, err := totp.NewDeriver(key, d.Realm)
		if err != nil {
			return nil, fmt.Errorf("dial: %w", err)
		}
		k.derivers = append(k.derivers, deriver)
		k.ids = append(k.ids, SlotID(key, d.Realm, port))
	}
	return k, nil
}

// SourcePortHint is what Dial adds to ErrNoAnswer with BindSourcePort on:
// the likeliest cause when a bound knock gets no answer where an unbound
// one would.
const SourcePortHint = "bind_source_port is on for this host, so the server admits a knock only from the source port it reserves: " +
	"a NAT between here and the server that rewrites source ports (masquerade random or fully-random, many home and carrier NATs) " +
	"would explain it; such a network cannot use bind_source_port"

// SlotsSpentError says that every knock of the period is spent, and how
// long until the next period starts. It wraps ErrSlotsSpent.
type SlotsSpentError struct {
	Slots int
	Wait  time.Duration
}

func (e *SlotsSpentError) Error() string {
	return fmt.Sprintf("all %d knocks of this period are spent; the next period starts in %d s "+
		"(ssh runs that share one connection need one knock: ControlMaster auto with ControlPersist, as seqknock ssh-config prints)",
		e.Slots, (e.Wait+time.Second-1)/time.Second)
}

func (e *SlotsSpentError) Unwrap() error { return ErrSlotsSpent }

func (d *Dialer) period() time.Duration { return cmp.Or(d.Period, totp.DefaultPeriod) }

func (d *Dialer) slots() int { return cmp.Or(d.Slots, totp.DefaultSlots) }

func (d *Dialer) now() time.Time {
	n := time.Now
	if d.Now != nil {
		n = d.Now
	}
	return n().Add(d.ClockOffset)
}

func (d *Dialer) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	network := cmp.Or(d.Network, "tcp")
	ipNet := map[string]string{"tcp": "ip", "tcp4": "ip4", "tcp6": "ip6"}[network]
	if ipNet == "" {
		return nil, fmt.Errorf("network %q: want tcp, tcp4 or tcp6", network)
	}
	if d.Resolve != nil {
		return d.Resolve(ctx, ipNet, host)
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, ipNet, host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolve %s: no address", host)
	}
	return addrs, nil
}

// Dial connects to host:port with a knock. It tries the host's addresses one
// at a time (never two SYNs with one knock at once) and, where a knock gets
// no answer within SynTimeout, the next free slot, until the slots of the
// period are spent. With Fallback keys, the attempts go round the keys,
// Key first: a knock of the new key, then one of the old, then the new
// key's next slot, so a server that does not know the new key yet costs one
// SynTimeout, and a lost SYN of the new key costs one slot of the old.
func (d *Dialer) Dial(ctx context.Context, host string, port uint16) (*net.TCPConn, error) {
	if err := totp.ValidatePeriod(d.period()); err != nil {
		return nil, err
	}
	type knockKey struct {
		deriver  *totp.Deriver
		id       string
		reserved int // slots reserved in this dial
		tried    int // knocks sent in this dial
		timedOut int // the slot of this key's last knock that got no answer, or -1
		left     int // slots of the period left after the last one reserved
		done     bool
	}
	derived, err := d.knockKeys(port)
	if err != nil {
		return nil, err
	}
	defer d.cache().last.Store(derived)
	var keys []*knockKey
	for i, deriver := range derived.derivers {
		keys = append(keys, &knockKey{deriver: deriver, id: derived.ids[i], timedOut: -1})
	}
	set, err := d.privilege()
	if err != nil {
		return nil, err
	}
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	addrs, err := d.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	for i := range addrs {
		// An IPv4 address as IPv4 (198.18.0.1, not ::ffff:198.18.0.1), in
		// messages and on the wire.
		addrs[i] = addrs[i].Unmap()
	}
	synTimeout := cmp.Or(d.SynTimeout, DefaultSynTimeout)
	reserve := d.Reserve
	if reserve == nil {
		reserve = d.cache().slots.Reserve
	}
	attempts := d.Attempts
	if attempts <= 0 {
		attempts = DefaultAttempts
	}
	var spent error // the store's answer when a key's slots were all used
	var busy error  // a slot's source port was in use here
	sent := 0       // knocks that went out
	for more := true; more; {
		more = false
		for _, k := range keys {
			if k.done {
				continue
			}
			counter := totp.Counter(d.now(), d.period())
			slot, err := reserve(k.id, counter, d.slots())
			if errors.Is(err, ErrSlotsSpent) {
				k.done, spent = true, err
				continue
			}
			if err != nil {
				return nil, err
			}
			k.reserved++
			k.left = d.slots() - slot - 1
			var isn uint32
			var sport uint16
			if d.BindSourcePort {
				isn, sport = k.deriver.Knock(port, counter, uint8(slot))
			} else {
				isn = k.deriver.ISN(port, counter, uint8(slot))
			}
			slotSent := false
			for _, a := range addrs {
				ap := netip.AddrPortFrom(a, port)
				if d.OnAttempt != nil {
					d.OnAttempt(ap, counter, slot, isn)
				}
				conn, err := d.attempt(ctx, ap, sport, isn, synTimeout, set)
				if err == nil {
					d.admitted(k.id, counter, k.timedOut, slot)
					return conn, nil
				}
				if sport != 0 && errors.Is(err, syscall.EADDRINUSE) {
					// No SYN went out: the knock is unspent, but this
					// slot's port is not ours to use; the next slot has
					// another.
					if d.OnPortBusy != nil {
						d.OnPortBusy(sport, counter, slot)
					}
					busy = fmt.Errorf("the source port of every slot tried was in use here (the last, %d of slot %d: %w)", sport, slot, err)
					break
				}
				sent++
				slotSent = true
				if errors.Is(err, ErrNoCapability) {
					return nil, ErrNoCapability
				}
				var be *broker.Error
				if errors.As(err, &be) {
					if be.Busy() {
						return nil, be
					}
					// Not served: both fixes, in one line.
					return nil, &NoPrivilegeError{Broker: be.Path, Err: be}
				}
				if ctx.Err() != nil {
					hint := ""
					if d.BindSourcePort {
						hint = "; " + SourcePortHint
					}
					return nil, fmt.Errorf("no SYN-ACK from %s: %w%s", net.JoinHostPort(host, strconv.Itoa(int(port))), ctx.Err(), hint)
				}
				// A refusal, or anything but silence, ends the dial.
				if !isTimeout(err) && !errors.Is(err, syscall.EHOSTUNREACH) && !errors.Is(err, syscall.ENETUNREACH) {
					return nil, fmt.Errorf("connect %s: %w", ap, err)
				}
			}
			if slotSent {
				k.tried++
				k.timedOut = slot
			}
			// At most Attempts knocks per key, and at most slots slots
			// reserved, also when a period boundary passes and the store
			// starts the new period at slot 0.
			if slot+1 >= d.slots() || k.tried >= attempts || k.reserved >= d.slots() {
				k.done = true
			}
			more = more || !k.done
		}
	}
	if sent == 0 && busy == nil && spent != nil {
		now := d.now()
		return nil, &SlotsSpentError{Slots: d.slots(), Wait: totp.NextBoundary(now, d.period()).Sub(now)}
	}
	if busy != nil && sent == 0 {
		return nil, fmt.Errorf("no slot left to knock on %s: %w", net.JoinHostPort(host, strconv.Itoa(int(port))), busy)
	}
	e := &NoAnswerError{
		Target:      net.JoinHostPort(host, strconv.Itoa(int(port))),
		Knocks:      sent,
		SynTimeout:  synTimeout,
		Fingerprint: totp.Fingerprint(d.Key),
		Left:        keys[0].left,
	}
	if spent != nil && keys[0].reserved == 0 {
		e.Left = 0
	}
	if d.LastAdmitted != nil {
		if c := d.LastAdmitted(keys[0].id); c != 0 {
			e.AdmittedAt = totp.Start(c, d.period())
		}
	}
	if d.BindSourcePort {
		e.Hint = SourcePortHint
	}
	return nil, e
}

// admitted records that a knock of id for counter got in (Admitted), and
// warns (Warnf) when a knock of the same key timed out just before in this
// dial: the pattern of another client spending the same slots.
func (d *Dialer) admitted(id string, counter uint64, timedOut, slot int) {
	if d.Admitted != nil {
		// Only the diagnosis of a later failure depends on it.
		_ = d.Admitted(id, counter)
	}
	if timedOut >= 0 && d.Warnf != nil {
		d.Warnf("slot %d's knock got no answer but slot %d's got in at once: %s", timedOut, slot, CollisionHint)
	}
}

// CollisionHint is what the client says when it sees the pattern of two
// clients knocking with one key: each spends slots the other does not know
// about, so a knock on a slot this client never used finds it spent.
const CollisionHint = "another client may be using this key (a second device, or root and you); " +
	"give each device its own key: seqknock keygen -o FILE --stanzas --device NAME USER HOST"

// NoAnswerError is Dial's error when no knock got a SYN-ACK. Its message
// names the likely causes in order, with how to check each; it wraps
// ErrNoAnswer.
type NoAnswerError struct {
	Target     string // host:port
	Knocks     int    // knocks sent
	SynTimeout time.Duration
	// Fingerprint is the preferred key's (totp.Fingerprint).
	Fingerprint string
	// AdmittedAt is when a knock of the preferred key last got in on this
	// port, as the slot store remembers (zero: never).
	AdmittedAt time.Time
	// Left is how many slots of the period the preferred key has left.
	Left int
	// Hint, when set, is the likeliest cause (SourcePortHint).
	Hint string
}

func (e *NoAnswerError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "no SYN-ACK from %s to %d knock(s) within %v each: %v; ", e.Target, e.Knocks, e.SynTimeout, ErrNoAnswer)
	if e.Hint != "" {
		fmt.Fprintf(&b, "likeliest: %s; ", e.Hint)
	}
	if e.AdmittedAt.IsZero() {
		fmt.Fprintf(&b, "likely causes, in order: (1) the server does not hold this key for you: "+
			"compare its fingerprint %s (seqknock fingerprint) with the one seqknockd shows for your user; "+
			"(2) a clock is off: the server logs a near miss with the skew; retry with --clock-offset; "+
			"(3) realm or port differ from the server's, or bind_source_port on the server but not here; "+
			"(4) the server's host firewall drops the port, a middlebox rewrites sequence numbers, or the host or seqknockd is down", e.Fingerprint)
	} else {
		fmt.Fprintf(&b, "this key got in at %s, so likely causes, in order: (1) %s; "+
			"(2) a clock moved: the server logs a near miss with the skew; retry with --clock-offset; "+
			"(3) the server no longer holds this key (fingerprint %s), has bind_source_port on the server but not here, "+
			"its host firewall drops the port, or the host or seqknockd is down",
			e.AdmittedAt.UTC().Format("2006-01-02 15:04 UTC"), CollisionHint, e.Fingerprint)
	}
	fmt.Fprintf(&b, "; the slots tried stay spent (the server may have admitted a SYN whose answer was lost), "+
		"%d left this period; a fixed key or clock knocks on fresh slots", e.Left)
	return b.String()
}

func (e *NoAnswerError) Unwrap() error { return ErrNoAnswer }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// attempt sends one knock to ap (an unmapped address), from source port
// sport when not 0.
func (d *Dialer) attempt(ctx context.Context, ap netip.AddrPort, sport uint16, isn uint32, synTimeout time.Duration, set func(int, uint32, uint16) error) (*net.TCPConn, error) {
	// The source port is bound by set, before the ISN: the broker binds
	// the sockets it is sent itself and refuses bound ones.
	nd := net.Dialer{Timeout: synTimeout, Control: prepare(ap.Addr(), isn, sport, d.SignKey, set)}
	network := "tcp4"
	if ap.Addr().Is6() {
		network = "tcp6"
	}
	c, err := nd.DialContext(ctx, network, ap.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// Resolve turns the client config and the flags into the Dialer of a
// connection to host:port, its Reserve left to the caller (nil: slots
// counted in this process alone). The first [[host]] matching the alias, then the
// host, gives the key, realm, period and slots; each flag given overrides
// its field (--key-file also drops the entry's fallback keys). Mistakes in
// the flags, or no key at all, are a UsageError; a key file that cannot be
// used is an error from keyfile.Load.
func Resolve(cfg *Config, f Flags, host string, port uint16) (*Dialer, error) {
	verbosef := f.Verbosef
	if verbosef == nil {
		verbosef = func(string, ...any) {}
	}
	if f.IPv4 && f.IPv6 {
		return nil, usagef("-4 and -6 exclude each other")
	}
	// The name given to ssh first (Host prod), then the one it connects to
	// (its HostName, 203.0.113.7).
	names := []string{host}
	if f.Alias != "" && f.Alias != host {
		names = []string{f.Alias, host}
	}
	e := newHostEntry()
	for _, n := range names {
		if m := cfg.Lookup(n, port); m != nil {
			e = *m
			verbosef("%s matches [[host]] match = %q in %s", n, m.Match, cfg.Path)
			break
		}
	}
	if f.KeyFile != "" {
		e.KeyFile, e.Fallback = f.KeyFile, nil
		verbosef("key from --key-file %s", f.KeyFile)
	}
	if f.SignKeyFile != "" {
		e.Sign, e.SignKeyFile = tcpsign.ModeMD5, f.SignKeyFile
	}
	f.apply(&e)
	if e.KeyFile == "" {
		return nil, cfg.NoHost(fmt.Sprintf("%s port %d", strings.Join(names, " or "), port), "give --key-file")
	}
	if err := CheckKnockFlags(e.Realm, e.Period, e.Slots); err != nil {
		return nil, err
	}
	if f.Attempts < 0 || f.Attempts > e.Slots {
		return nil, usagef("--attempts %d out of range 1..%d (the slots per period)", f.Attempts, e.Slots)
	}
	d := &Dialer{
		Realm:          e.Realm,
		Period:         e.Period,
		Slots:          e.Slots,
		BindSourcePort: e.BindSourcePort,
		Network:        "tcp",
		Broker:         BrokerPath(cfg, f.Broker),
		SynTimeout:     f.SynTimeout,
		Attempts:       f.Attempts,
		Timeout:        f.Timeout,
		ClockOffset:    f.ClockOffset,
	}
	if f.IPv4 {
		d.Network = "tcp4"
	}
	if f.IPv6 {
		d.Network = "tcp6"
	}
	for i, file := range append([]string{e.KeyFile}, e.Fallback...) {
		k, err := keyfile.Load(file)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			d.Key = k
		} else {
			d.Fallback = append(d.Fallback, k)
		}
	}
	if e.BindSourcePort {
		verbosef("bind_source_port: each knock comes from the source port it reserves")
	}
	if e.SignKeyFile != "" {
		k, err := keyfile.Load(e.SignKeyFile)
		if err != nil {
			return nil, fmt.Errorf("sign key: %w", err)
		}
		d.SignKey = k
		verbosef("signing with %s, key from %s", e.Sign, e.SignKeyFile)
	}
	if f.Verbosef != nil {
		synTimeout := cmp.Or(d.SynTimeout, DefaultSynTimeout)
		d.OnBroker = func(path string) {
			verbosef("no CAP_NET_ADMIN here: the broker at %s sets the ISN", path)
		}
		d.OnAttempt = func(ap netip.AddrPort, counter uint64, slot int, _ uint32) {
			verbosef("knock %s counter %d slot %d (of %d), waiting %v for a SYN-ACK", ap, counter, slot, d.Slots, synTimeout)
		}
	}
	return d, nil
}
