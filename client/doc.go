// Package client is the seqknock user's side: a dialer that puts the knock in
// its SYN, the slot bookkeeping that lets several connections share a period,
// and the ways the connected socket reaches a program: a stdin/stdout relay
// (OpenSSH ProxyCommand), fd passing (ProxyUseFdpass) and an exec wrapper in
// the style of UCSPI-TCP's tcpclient.
//
// # Slots, and a knock that gets no answer
//
// docs/design.md ("The client's side") has the rules: one knock a dial by
// default (Dialer.Attempts), a slot marked used in the slot file
// (SlotStore) before its SYN is sent and never sent again, the last
// period each key got in, and the causes NoAnswerError and CollisionHint
// name when a knock gets no answer.
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
package client
