package listenlock

import (
	"fmt"
	"math/bits"
	"slices"

	"golang.org/x/sys/unix"
)

// Offsets of the program's two ends and the TCP header fields it reads.
const (
	// skfAdMark is SKF_AD_OFF (-0x1000) + SKF_AD_MARK (20) of
	// linux/filter.h: skb->mark, as an ancillary load.
	skfAdMark = 0xfffff000 + 20
	tcpFlags  = 13 // the flags byte of the TCP header
	flagACK   = 0x10
	flagSYN   = 0x02
	// Keep is the accept verdict: keep the whole packet.
	Keep = 0xffffffff
)

// Program returns the filter for packet mark bit bit (a mask with exactly
// one bit set): a SYN without ACK and without bit is dropped, anything
// else is kept.
func Program(bit uint32) ([]unix.SockFilter, error) {
	if bits.OnesCount32(bit) != 1 {
		return nil, fmt.Errorf("listenlock: packet mark bit %#x must have exactly one bit set", bit)
	}
	const (
		ldW   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		ldB   = unix.BPF_LD | unix.BPF_B | unix.BPF_ABS
		jset  = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		retK  = unix.BPF_RET | unix.BPF_K
		nAcc  = 5 // the accept instruction's index
		nDrop = 6 // the drop instruction's index
	)
	// A jump's offsets count from the next instruction.
	to := func(from, target int) uint8 { return uint8(target - from - 1) }
	return []unix.SockFilter{
		{Code: ldW, K: skfAdMark},
		{Code: jset, Jt: to(1, nAcc), Jf: 0, K: bit},
		{Code: ldB, K: tcpFlags},
		{Code: jset, Jt: to(3, nAcc), Jf: 0, K: flagACK},
		{Code: jset, Jt: to(4, nDrop), Jf: to(4, nAcc), K: flagSYN},
		{Code: retK, K: Keep},
		{Code: retK, K: 0},
	}, nil
}

// OwnBit returns the packet mark bit prog locks for, when prog is this
// package's program for some bit (an older lock, before the bit changed).
func OwnBit(prog []unix.SockFilter) (uint32, bool) {
	if len(prog) != 7 {
		return 0, false
	}
	bit := prog[1].K
	want, err := Program(bit)
	if err != nil || !slices.Equal(prog, want) {
		return 0, false
	}
	return bit, true
}
