// Package admitlog reads the knocks the kernel admits, as they happen.
//
// The knock chain's admit rule ends in `log group N` (nftgen.Rules.LogGroup):
// the kernel hands every admitted SYN to nflog group N. A Listener binds
// that group over netlink (NETLINK_NETFILTER, the NFULNL messages of
// nfnetlink_log), asks for the packet's first bytes only (the IP and TCP
// headers), and yields one Admission per SYN: source and destination
// address and port, and the sequence number, which is the knock. Nothing
// in user space is on the packet path: the kernel queues the message and
// the packet goes on.
//
// seqknockd uses it to remember spent knocks the moment they are spent
// (so a table removed a millisecond later is rebuilt with them still
// spent); an audit log can use the same feed.
//
// Reading is split so a caller can be exact about ordering: Ready signals
// that messages may be queued, and Drain returns everything queued at that
// moment without blocking. Every admission the kernel logged before Drain
// is called is in its result (or Drain reports ErrLost, when the socket's
// queue overflowed and some were dropped).
package admitlog
