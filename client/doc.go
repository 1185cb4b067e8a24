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
// The fourth way needs no privilege in the client at all: `seqknock broker`
// (package client/broker, whose doc.go has the wire format and its rules)
// sets the ISN of a socket the client makes and sends it; the client then
// connects it itself. Dialer.privilege picks it when this process holds
// no CAP_NET_ADMIN and may connect to the broker's socket.
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
