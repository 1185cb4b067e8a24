// Package listenlock builds and attaches the socket filter that locks a
// protected service's listening socket: a SYN reaches the socket only when
// it carries the packet mark bit that seqknock's admit rules set, so a
// missing, flushed or foreign nftables table leaves the port closed, not
// open. Segments with ACK set (every segment of an established connection
// and the handshake's last one) and segments without SYN pass untouched.
//
// The filter is a classic BPF program attached with SO_ATTACH_FILTER, not
// an eBPF one, because:
//
//   - it needs no bpf() system call, so no CAP_BPF or CAP_SYS_ADMIN and
//     nothing the kernel.unprivileged_bpf_disabled sysctl or a seccomp
//     profile forbidding bpf() can refuse; the kernel checks a classic
//     program with its simple checker (no verifier log to fail on) and
//     translates it to eBPF and JITs it like any other program;
//   - SO_GET_FILTER reads a classic program back as it was attached, so
//     seqknockd can tell, on a socket it did not create, whether the lock
//     on it is its own and current (for an eBPF program it reports
//     nothing);
//   - seven instructions do the job: the packet mark is a classic BPF
//     ancillary load (SKF_AD_MARK), and a TCP socket filter sees the
//     segment from its TCP header, so the flags are byte 13.
//
// The program, with BIT the packet mark bit:
//
//	ld   [SKF_AD_OFF + SKF_AD_MARK]   ; A = skb->mark
//	jset #BIT         -> accept
//	ldb  [13]                         ; the TCP flags
//	jset #0x10 (ACK)  -> accept
//	jset #0x02 (SYN)  -> drop
//	accept: ret #0xffffffff
//	drop:   ret #0
//
// A socket filter's return value is how many bytes of the packet to keep,
// so accept returns the largest, which never trims: a GRO packet of a BIG
// TCP connection may be longer than the 0x40000 tcpdump uses. Program is
// pure; Attach, Check and Detach act on a socket (a listener duplicated
// from the service's process by package tcpsign's Take). A socket
// whose filter is locked (SO_LOCK_FILTER) or is someone else's is
// reported, never changed. The kernel takes no socket filter on a
// Multipath TCP socket (ErrMPTCP).
//
// The filter is inherited by the connections the listener accepts, where
// it passes every segment with ACK set; a SYN to an established
// connection without the mark is dropped, as the table would drop it.
package listenlock
