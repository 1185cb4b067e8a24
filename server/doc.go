// Package server is the seqknockd side: the TOML config and its keys, the
// sync step that turns the config and a time into the desired nftables state
// (pure, in Desired), the kernel-facing sync and status, and the daemon loop
// that syncs at every period boundary.
//
// Beside the table, the daemon tells the truth about itself: its lock
// (LockTable) is what status and teardown probe for a live daemon
// (ProbeDaemon), its info file (DaemonInfo) what status, users and
// admissions show, and the near-miss diagnosis (NearMiss) says whose knock
// a sampled dropped SYN was and why it missed.
//
// Data flows one way: config + clock → totp → desired elements → nftgen →
// kernel. A sync is stateless and idempotent; it applies whole or not at all.
package server
