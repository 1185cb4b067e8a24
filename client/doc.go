// Package client is the seqknock user's side: a dialer that puts the knock in
// its SYN, the slot bookkeeping that lets several connections share a period,
// and the ways the connected socket reaches a program: a stdin/stdout relay
// (OpenSSH ProxyCommand), fd passing (ProxyUseFdpass) and an exec wrapper in
// the style of UCSPI-TCP's tcpclient.
//
// # Slots, and a knock that gets no answer
//
// A dial knocks once by default (Dialer.Attempts, --attempts): a knock the
// server drops is silence, and what drops it (a wrong key, a skewed clock,
// a dead server, the host firewall) drops every other slot's knock too, so
// one SynTimeout (3 s; the kernel sends the SYN again after 1 s within it)
// is all a failure costs. Its error, NoAnswerError, names the likely causes
// in order, with how to check each: the key's fingerprint
// (totp.Fingerprint) against the one seqknockd shows, the server's log of
// near misses and --clock-offset, the realm and port, the host firewall.
//
// The rule for slots (SlotStore): a slot is marked used, under the file's
// lock, before its SYN is sent, and stays used whatever came of it. The
// server spends a knock at the first SYN it admits, and a SYN it admitted
// may have lost its SYN-ACK, so a knock that got no answer may be spent
// there: it is never sent again. What a failure spends is that one slot.
// The slot file keeps the slots used per SlotID (port, realm and key: a
// fixed key has slots of its own, fresh) and per period, for the last 64
// periods and any ahead (a knock sent with a clock minutes ahead is not
// sent again when the clock reaches its period), so after a fix the next
// connect of the same period knocks on a slot never used.
//
// The file also keeps the last period in which each SlotID's knock got in
// (written at most once a period). Two clients with one key keep separate
// files and spend each other's slots, and that is what a client can see:
// its knock gets no answer although this key got in on this port within a
// day, or (with Attempts above 1) a knock times out and the next slot's
// gets in at once. It then names that cause first (CollisionHint): give
// each device its own key (keygen --stanzas --device).
//
// Connection sharing (the ControlMaster lines ssh-config prints) makes
// repeated ssh runs spend one knock. ssh sends a ProxyCommand's error
// output to /dev/null when ControlPersist is set; a failed connect is then
// also written to the controlling terminal.
//
// # Privilege
//
// Setting a socket's initial sequence number takes TCP_REPAIR, and so
// CAP_NET_ADMIN. That is the one thing seqknock may do with privilege, and
// only for the user it acts for. Without the broker (below), the process
// gets it in one of three ways:
//
//   - setcap cap_net_admin+ep on the binary: a process of the user holding
//     that capability alone;
//   - sudo (or a set-user-ID root binary): root acting for another user;
//   - root itself, acting for itself (or, with --user, for another user).
//
// Under sudo (real user root and SUDO_UID another uid), in a set-user-ID run
// (real and effective ids differ) and for root's --user, the process is
// elevated: before it reads or writes a single file, Become turns it into
// the invoking user. On one locked thread it sets PR_SET_KEEPCAPS, then the
// user's groups, gid and uid on every thread; it cuts that thread's
// capabilities to CAP_NET_ADMIN and raises it in the ambient set, and execs
// /proc/self/exe with the same arguments and a scrubbed environment (HOME,
// USER and LOGNAME from the user database; PATH, TERM and the locale kept;
// LD_*, GO*, XDG_* and the rest dropped). execve replaces every thread with
// the credentials of that one: the new image is an ordinary process of the
// user whose only privilege is CAP_NET_ADMIN. Every config, key and state
// file is then opened exactly as the user could open it without sudo: no
// path is checked and then opened with root's rights, because root's rights
// are gone before any path is looked at. The same image is what a setcap
// run starts as, so the two modes share one code path from there on.
//
// While it holds the capability, the user cannot ptrace the process or read
// its memory (/proc/PID/mem, /proc/PID/fd): the kernel lets a tracer attach
// only if its permitted set includes the tracee's. That rule holds thread
// by thread, and the image Become starts is dumpable (its ids do not change
// in that execve), so GuardCapabilities also makes it non-dumpable before it
// reads a file: otherwise a thread DropPrivileges has already cleared could
// be traced while another still holds CAP_NET_ADMIN, and the memory they
// share written (a setcap run is non-dumpable from its execve). Once the socket is
// connected, DropPrivileges clears the capability sets of every thread
// (capset through syscall.AllThreadsSyscall; clearing the permitted and
// inheritable sets also empties the ambient set), so the relay, the fd
// passing and the exec'd program run with no capability at all. A cgo build
// (plain go build or go install where a C compiler is) cannot reach the C
// runtime's threads that way: it hands the connected socket to a fresh
// image of itself instead (HandOver: capability sets of one locked thread
// cleared, PR_SET_NO_NEW_PRIVS so a setcap binary regains nothing, execve
// with SEQKNOCK_CONNECTED_FD naming the socket), which starts with no
// capability on any thread. Every build works in every mode: root, sudo,
// setcap and the broker (where the process holds nothing to drop). Root
// acting for itself has nothing to drop.
//
// # The broker
//
// The fourth way needs no privilege in the client at all: `seqknock broker`,
// a service (seqknock-broker.socket and .service, socket-activated, holding
// CAP_NET_ADMIN alone) that lends exactly one thing: setting the ISN of a
// TCP socket its caller sends it. The client makes its own socket, has the
// broker set its ISN, and connects it itself: the connection, its uid and
// its process stay the user's, and the broker never sees the key, the
// address or the traffic.
//
// Wire format: a Unix SOCK_SEQPACKET socket (default
// /run/seqknock/broker.sock, mode 0660, group seqknock), one message per
// request and one per answer; a connection may carry up to 64 requests.
// On connecting, the caller first gets a greeting, an answer: "ok" when it
// will be served, or a refusal, after which the broker closes. The client
// (BrokerClient) makes one connection per request: connect, the request,
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
// The broker answers a request only for root and members of its group
// (default seqknock: the gid or a supplementary group of the caller as it
// connected, from SO_PEERCRED and SO_PEERGROUPS, never the user database).
// It refuses a descriptor that is not an IPv4 or IPv6 SOCK_STREAM
// IPPROTO_TCP socket in state CLOSE (TCP_INFO: not connected, connecting
// or listening), a socket already bound to a port, a message longer than
// 10 bytes (MSG_TRUNC), more than one
// descriptor or a cut control message (MSG_CTRUNC): every descriptor a
// message carried is closed whatever the answer. Each read has a deadline
// (2 s); at most 256 connections are served at once and 32 per uid, and
// one more is answered "busy" at once (the client retries), so a caller
// that sends nothing holds only its own slots.
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
// run by a user who is not root (CheckNotFileCapability: a capability it
// did not hold before execve, no no_new_privs, nothing in its ambient
// set): that user could stop it and would lend the capability to their
// own sockets (TestSetcapBrokerAttack). A setcap binary sets the ISN only
// of sockets it makes itself: the socket is made by its dialer (close on
// exec, never sent anywhere), and the process is non-dumpable from its
// execve, so its user can neither trace it nor take a descriptor from it
// (pidfd_getfd and /proc/PID/fd need the same ptrace access); stopped or
// killed inside the window, it leaves a socket nobody else holds. With
// bind_source_port it too binds the source port before repair mode.
//
// The path is created by systemd (or, run by hand, by ListenBroker: an
// old socket is replaced, a symbolic link or a file at the path refused,
// the directory must be writable by its owner alone). A client follows
// the path it is given (--broker, broker = in client.toml): pointing it at
// another broker fools only that user.
//
// Refused outright when elevated: --user (only root, acting for itself, may
// name another user), and keygen and isn, which need no privilege.
//
// State files are opened below the user's home (or $XDG_STATE_HOME) with
// openat and O_NOFOLLOW|O_DIRECTORY per directory and O_NOFOLLOW on the file
// (see SlotStore): a symbolic link there is refused, never followed.
//
// exec starts its program with fork/exec and an explicit file table (the
// socket at fds 6 and 7, fds 3 to 5 closed), then waits for it and exits
// the way it did. No descriptor of the running process is ever overwritten,
// so the Go runtime's own descriptors (its epoll instance) stay intact,
// whatever numbers they have.
package client
