// Package hostconns finds the TCP connections that really exist on this
// host, and tells when conntrack forgets connections.
//
// seqknock's knock chain accepts a non-SYN packet that conntrack sees as new
// (a connection picked up mid-stream: open before the table, or after
// `conntrack -F`) only when its 4-tuple is one of these connections.
// Established reads them from the kernel's socket table over sock_diag
// (NETLINK_SOCK_DIAG, an inet_diag dump); WatchLost reports conntrack's
// destroy events (NFNLGRP_CONNTRACK_DESTROY), after which the daemon reads
// them again.
//
// Owner asks the same socket table which uid owns the connected socket
// with a given address pair: for a connection accepted on loopback, the
// user at the other end (`seqknock socks` serves its own user alone).
package hostconns
