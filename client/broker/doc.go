// Package broker is `seqknock broker`, its client and the wire format
// between them (wire.go).
//
// The broker lets a client set its SYN's ISN with no privilege at all:
// `seqknock broker` is a service (seqknock-broker.socket and .service,
// socket-activated, holding CAP_NET_ADMIN alone) that lends exactly one
// thing: setting the ISN of a TCP socket its caller sends it. The client makes its own socket, has the
// broker set its ISN, and connects it itself: the connection, its uid and
// its process stay the user's, and the broker never sees the key, the
// address or the traffic.
//
// Wire format: a Unix SOCK_SEQPACKET socket (default
// /run/seqknock/broker.sock, mode 0660, group seqknock), one message per
// request and one per answer; a connection may carry up to 64 requests.
// On connecting, the caller first gets a greeting, an answer: "ok" when it
// will be served, or a refusal, after which the broker closes. The client
// (Client) makes one connection per request: connect, the request,
// shutdown(SHUT_WR), then the greeting and the answer. A check is a
// connection shut without a request, answered by the greeting alone.
// Before a dial spends a slot it only checks that the socket exists and
// that it may connect to it (Available; no connection).
//
// Both sides wait in Go's network poller, every read and write with a
// deadline. The broker serves each connection in a goroutine of its own,
// so a slow caller blocks no one, and neither does one whose socket's lock
// another of its threads holds (a setsockopt whose copy from memory waits
// on a page of a FUSE file it serves): that holds one goroutine's thread,
// never the accepting one (TestBrokerLockedSocket).
//
//	check:   "skb1"                               (4 bytes, no descriptor)
//	set ISN: "skb1" || u32be(isn) [|| u16be(sport)] (8 or 10 bytes) + exactly one descriptor (SCM_RIGHTS)
//	answer:  "ok", or "refused: " + one line of reason (at most 256 bytes)
//
// sport is the source port to bind the socket to: the one the knock
// reserves (bind_source_port), or else one the client picked (below); a
// port below 1024 is refused (no knock reserves one, and the broker binds
// nothing its caller could not bind itself), and a port in use here as
// "refused: source port in use: PORT", which the client reports as
// EADDRINUSE and answers by skipping that slot (bind_source_port) or by
// picking again. 0 or absent (a client from before the pick) leaves the
// port to the broker.
//
// Who may ask (root and the members of its group, as they connected),
// what is refused and the bounds on each caller: SECURITY.md, the broker.
//
// What a member can do with it: choose the ISN and the source port (1024
// or above) of sockets it holds, nothing more. A process can only send descriptors it
// holds, so a socket is the caller's or one given to it; the broker does
// not ask which process made it. The caller still holds the socket while
// the broker works on it, and repair mode is a privilege of its own:
// connect() makes the socket established without a handshake, and bind()
// and listen() take a port another socket holds, even one another user's
// service listens on (127.0.0.1:PORT beside 0.0.0.0:PORT), whose new
// connections it then gets (SK_FORCE_REUSE skips the kernel's conflict
// check). So no socket a caller holds is ever in repair mode while its
// port is free to choose: before repair mode, the broker binds it
// (bindSource) with the kernel's normal conflict checks, SO_REUSEADDR and
// SO_REUSEPORT cleared, to the port the request names. The client names
// one always: without bind_source_port, it picks the port in its own
// network namespace (pickPort: bind(port 0) on a throwaway socket of the
// same family, address and IPV6_V6ONLY, getsockname, close; it was never
// connected, so the port is free at once), which honours that
// namespace's ip_local_port_range and ip_local_reserved_ports; the
// broker, in a namespace of its own, can read neither. A port taken
// between the pick and the broker's bind is refused as in use and picked
// again (up to 8 times). The cost is one more socket per dial, in the
// client (BenchmarkBrokerPreBind). For a request without a port (a
// client from before the pick) the broker picks one at random from
// 32768-60999, 256 tries, then every port of the range in turn from a
// random one, so that a user holding all but a few ports does not fail
// others' dials while the kernel's own pick still finds one; that pick
// may take a port reserved in the caller's namespace (one the caller
// could bind itself). The port is always named
// in bind(): a port the kernel picks for bind(port 0) is given back when
// the socket is disconnected, and in repair mode the caller can connect
// it (no handshake) and disconnect it, then bind it anywhere; a named
// port stays through that. For the same reason a socket that comes bound
// is refused: the broker cannot tell how its port was chosen. A bound
// socket cannot be bound again, and a listen() in the window listens on
// its own port, which no other socket shares (TestBrokerWindowHoldsPort).
// The broker then checks the state again while repair mode is still on
// and after it is off (TCP_REPAIR_OFF_NO_WP: no window probe), and a
// socket found in use (connected, or listening on its own port) is
// disconnected with repair mode on (no FIN, no RST) and taken out of
// repair mode, round after round (up to 1,000) until it is found closed:
// it is never handed back in repair mode (TestBrokerCallerRacesConnect,
// TestBrokerDisarm). A member racing bind()+listen() on 127.0.0.1:PORT
// against the broker lands neither (TestBrokerRaceBindListen). Left: a
// connect() landing in the microseconds just before a
// TCP_REPAIR_OFF_NO_WP leaves a socket established without a handshake
// that the caller may write on until the check right after it disarms it
// (not seen in the test). The cost: a broker dial's port is its own, so
// TIME_WAIT sockets hold their ports for it, and a host that closes more
// than about 28,000 broker dials a minute first (the default
// ip_local_port_range) would run short (an
// ordinary dial's port is shared by connections to other destinations).
//
// A better mechanism would be the broker making the socket itself and
// passing it back, but the socket must belong to the caller's network
// namespace, which the broker (in a namespace of its own, allowed only
// Unix sockets) could reach only with setns and CAP_SYS_ADMIN: binding
// the caller's socket needs no more than the capability it holds.
//
// The broker must be a process its callers cannot stop: one stopped
// (SIGSTOP) inside its repair window and killed leaves the caller a
// socket in repair mode for good. The unit runs it as a user of its own
// (DynamicUser), so only root may signal it. Run by hand as root, it
// gives up every capability but CAP_NET_ADMIN once its socket is made
// (KeepOnlyNetAdmin: bounding, permitted, effective and inheritable sets
// of every thread; a cgo build execs itself with the socket handed over),
// so the kernel's own checks on its binds (ip_unprivileged_port_start:
// CAP_NET_BIND_SERVICE) apply to it as to its caller
// (TestReviewRootBrokerKeepsNetAdmin). `seqknock broker` refuses to
// run under sudo (its user's terminal can stop it) and from a setcap copy
// run by a user who is not root (client.CheckNotFileCapability: a capability it
// did not hold before execve, no no_new_privs, nothing in its ambient
// set): that user could stop it and would lend the capability to their
// own sockets (TestSetcapBrokerAttack).
package broker
