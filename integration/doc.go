// Package integration holds seqknock's end-to-end tests: real OpenSSH
// through seqknock and seqknockd, in network namespaces built by each test
// (server, client, attacker, NAT router; addresses from 198.18.0.0/15 and
// 2001:db8::/32 only), with tcpdump captures and raw-socket replays. They
// need root and the Debian packages .ci/run installs; without them they
// skip, except under CI=true, where they fail.
package integration
