package gateway

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Chain names in the gateway's table.
const (
	chainPre   = "pre"
	chainNAT   = "nat"
	chainInput = "input"
)

// ipsDstNAT is conntrack's IPS_DST_NAT status bit: the flow was
// redirected (or otherwise destination-NATed).
const ipsDstNAT = 1 << 5

// Ruleset is the gateway's table as google/nftables objects: the table,
// its base chains and their rules, each rule tagged with a comment that
// fingerprints the whole set (so a changed or partial table is seen).
type Ruleset struct {
	Table  *nftables.Table
	Chains []*nftables.Chain
	Rules  []*nftables.Rule
}

// Build turns a config into the gateway's ruleset. It is pure: Install
// queues the result in one transaction.
func Build(c *Config) *Ruleset {
	t := &nftables.Table{Name: c.Table, Family: nftables.TableFamilyINet}
	accept := nftables.ChainPolicyAccept
	pre := &nftables.Chain{Name: chainPre, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw, Policy: &accept}
	nat := &nftables.Chain{Name: chainNAT, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept}
	input := &nftables.Chain{Name: chainInput, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept}
	rs := &Ruleset{Table: t, Chains: []*nftables.Chain{pre, nat, input}}
	add := func(ch *nftables.Chain, exprs ...expr.Any) {
		rs.Rules = append(rs.Rules, &nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
	}
	for _, d := range c.Dests {
		for _, p := range d.Allow {
			add(pre, slices.Concat(matchDest(d.Addr), matchSource(p), []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})...)
		}
		add(pre, slices.Concat(matchDest(d.Addr), []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}})...)
	}
	for _, d := range c.Dests {
		add(nat, slices.Concat(matchDest(d.Addr), []expr.Any{
			&expr.Immediate{Register: 1, Data: binary.BigEndian.AppendUint16(nil, c.ListenPort)},
			&expr.Redir{RegisterProtoMin: 1},
		})...)
	}
	listen := matchTCPPort(c.ListenPort)
	// Only redirected flows reach the listener.
	add(input, slices.Concat(listen, []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(ipsDstNAT), Xor: native32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: native32(0)},
		&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop},
	})...)
	// A new flow is accepted while the gateway's marked listener is
	// there, else dropped (the package doc says why).
	add(input, slices.Concat(listen, ctNew(), []expr.Any{
		&expr.Socket{Key: expr.SocketKeyMark, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: native32(c.ListenMark)},
		&expr.Verdict{Kind: expr.VerdictAccept},
	})...)
	add(input, slices.Concat(listen, ctNew(), []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}})...)
	rs.tag()
	return rs
}

// tag puts the comment "seqknock-gw FINGERPRINT/N" on every rule: the
// fingerprint covers the config's shape, N is the rule's place.
func (rs *Ruleset) tag() {
	h := sha256.New()
	for _, r := range rs.Rules {
		fmt.Fprintf(h, "%s|", r.Chain.Name)
		for _, e := range r.Exprs {
			fmt.Fprintf(h, "%#v|", e)
		}
	}
	fp := hex.EncodeToString(h.Sum(nil)[:8])
	for i, r := range rs.Rules {
		// A comment, so nft list shows it.
		r.UserData = userdata.AppendString(nil, userdata.TypeComment, fmt.Sprintf("seqknock-gw %s/%d", fp, i))
	}
}

func native32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// matchFamily is meta nfproto ipv4 or ipv6.
func matchFamily(a netip.Addr) []expr.Any {
	proto := byte(unix.NFPROTO_IPV6)
	if a.Is4() {
		proto = unix.NFPROTO_IPV4
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
}

// matchTCPPort is meta l4proto tcp tcp dport port.
func matchTCPPort(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
	}
}

// addrField is where the source (or destination) address is in the
// network header of a's family: the destination follows the source.
func addrField(a netip.Addr, dst bool) (offset, length uint32) {
	offset, length = 8, 16
	if a.Is4() {
		offset, length = 12, 4
	}
	if dst {
		offset += length
	}
	return offset, length
}

// matchDest is ip daddr D tcp dport P (ip6 for an IPv6 D).
func matchDest(ap netip.AddrPort) []expr.Any {
	off, n := addrField(ap.Addr(), true)
	return slices.Concat(matchFamily(ap.Addr()), []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ap.Addr().AsSlice()},
	}, matchTCPPort(ap.Port()))
}

// matchSource is ip saddr & MASK == NET (ip saddr ADDR for a full-length
// prefix).
func matchSource(p netip.Prefix) []expr.Any {
	off, n := addrField(p.Addr(), false)
	load := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n}
	if p.Bits() == p.Addr().BitLen() {
		return []expr.Any{load, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Addr().AsSlice()}}
	}
	return []expr.Any{load,
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: n, Mask: net.CIDRMask(p.Bits(), int(n)*8), Xor: make([]byte, n)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}

// ctNew is ct state new.
func ctNew() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native32(expr.CtStateBitNEW), Xor: native32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: native32(0)},
	}
}
