// Package server is the seqknockd side: the TOML config and its keys, the
// sync step that turns the config and a time into the desired nftables state
// (pure, in Desired), the kernel-facing sync and status, and the daemon loop
// that syncs at every period boundary.
//
// Data flows one way: config + clock → totp → desired elements → nftgen →
// kernel. A sync is stateless and idempotent; it applies whole or not at all.
package server
