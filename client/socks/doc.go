// Package socks is `seqknock socks`: a local proxy that speaks SOCKS5
// (RFC 1928) and HTTP CONNECT on the same listeners, for programs that
// cannot run seqknock themselves (a browser, curl, git, GUI SSH clients),
// and dials each destination the client config covers with a knock.
//
// # One listener, two protocols
//
// The first byte tells them apart: 0x05 is a SOCKS5 greeting, an
// upper-case letter starts an HTTP/1.x request line, 0x04 (SOCKS4) gets
// SOCKS4's rejection and anything else HTTP 400. SOCKS5 is served for CONNECT
// only (BIND and UDP ASSOCIATE get reply 7), to IPv4 and IPv6 addresses
// and to names (address types 1, 4 and 3; others get reply 8). HTTP is
// served for CONNECT only (other methods get 405). After a successful
// reply the two sockets are relayed with io.Copy, which splices between
// *net.TCPConn and *net.TCPConn or *net.UnixConn: the bytes stay in the
// kernel. Each direction's end shuts the other side's write half, so a
// half-closed connection (ssh's EOF) behaves as it does with proxy.
//
// # Never an open proxy
//
// A request is dialed only when a [[host]] of the client config covers it
// (Cover); any other gets SOCKS5 reply 2 ("connection not allowed by
// ruleset") or HTTP 403, a log line, and nothing is dialed, not even a DNS
// lookup. A name is matched as `seqknock proxy` matches it: the first
// [[host]] whose pattern and port fit. An address is matched only by a
// [[host]] whose match is that address (in any spelling) or a pattern
// over the address's text (198.18.7.*, or "*", which says every
// destination of this user is knocked). The [[host]] names are never
// resolved to match an address request: that would let whoever controls
// the DNS of a [[host]] name (or a name that pattern covers) point it at
// any address, local services included, and have the proxy dial there on
// a request for that bare address (the DNS-rebinding pattern). A client
// that wants a [[host]] by name asks by name (curl --socks5-hostname,
// nc -X 5, a browser's "proxy DNS" setting), and the dialer resolves it
// exactly as proxy does.
//
// # Only its owner uses it
//
// The Unix socket is mode 0600 in a directory of mode 0700, and its peer's
// uid (SO_PEERCRED) must be the proxy's. On TCP (default 127.0.0.1:1080)
// the kernel is asked over sock_diag which uid owns the socket at the
// other end of the accepted connection, by its exact address pair
// (hostconns.Owner): only a socket of this host has it, and it must be
// the proxy's uid. Anyone else is served only with the username and
// password of the client config (socks_user, socks_password_file: SOCKS5
// username/password, RFC 1929, or HTTP Basic Proxy-Authorization),
// compared in constant time. Refusals are answered with the protocol's
// error (SOCKS5 method 0xff or password status 1; HTTP 403 or 407) and
// logged in one line naming the peer and its uid; a password is never
// logged.
//
// # Bounds
//
// From accept to a complete request a client has HandshakeTimeout
// (default 10 s); a SOCKS5 request is at most 262 bytes by construction,
// an HTTP request at most MaxHTTPHeader bytes and 64 header lines (431
// otherwise). A name must be 1 to 253 bytes of letters, digits, '-', '_'
// and '.'; a control byte in an HTTP line, a malformed line or a cut
// request gets an error reply (400, 408, SOCKS5 reply 1) and a close.
// Peers that are not the proxy's user may hold at most MaxOtherHandshakes
// handshakes at once (the next is closed unanswered), so another local
// user cannot exhaust the proxy's descriptors; the owner is not counted.
// The dial itself is bounded by the dialer (--syn-timeout per knock,
// --timeout overall).
//
// Each dial is made as proxy makes it, in the same privilege mode;
// docs/socks.md says what each mode leaves this long-running process.
package socks
