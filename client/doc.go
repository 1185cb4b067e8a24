// Package client is the seqknock user's side: a dialer that puts the knock in
// its SYN, the slot bookkeeping that lets several connections share a period,
// and the ways the connected socket reaches a program: a stdin/stdout relay
// (OpenSSH ProxyCommand), fd passing (ProxyUseFdpass) and a root-run exec
// wrapper in the style of UCSPI-TCP's tcpclient.
//
// Setting a socket's initial sequence number takes TCP_REPAIR, and so
// CAP_NET_ADMIN: seqknock runs under sudo or with that file capability, and
// gives up every privilege as soon as the socket is connected (DropPrivileges).
package client
