// Package tcpsign signs TCP connections to a protected service with
// TCP-MD5 (RFC 2385), after the knock has admitted them.
//
// The knock protects the SYN only; once a connection is admitted, anyone
// on the path who learns its sequence numbers can reset it or inject data.
// With a TCP-MD5 key on both ends, the kernel drops every segment of the
// connection, SYN and RST included, whose MD5 option is missing or wrong,
// before TCP sees it.
//
// The client puts the key for the server's address on its own socket
// before connect() (SetPeerKey); that needs no capability. The server
// needs the key on the service's listening socket, for every peer: a
// TCP_MD5SIG_EXT key with TCP_MD5SIG_FLAG_PREFIX and prefix length 0
// (SetListenerKey). An IPv6 listener gets two such keys, one for IPv6 peers
// and one, given as the v4-mapped address ::ffff:0.0.0.0, for IPv4 peers
// reaching a dual-stack socket; the kernel files the latter as an IPv4
// key. Connections accepted from the listener inherit the key.
//
// seqknockd does that without patching the service: Listeners finds the
// listening sockets of a port through sock_diag (with CAP_NET_ADMIN the
// kernel also reports each socket's TCP-MD5 keys, so it tells which are
// signed already), Sign finds the process holding each one in /proc and
// duplicates it with pidfd_open and pidfd_getfd (Linux 5.6; needs
// CAP_SYS_PTRACE over the process), sets the key on the duplicate, which
// is the same socket, and closes it at once. It acts only on listeners
// that root created and a root process holds (see Sign).
//
// TCP-AO (RFC 5925) would replace TCP-MD5 with per-user keys; AOSupport
// tells whether the running kernel has it (CONFIG_TCP_AO, Linux 6.7).
package tcpsign
