// Package totp implements ISN-v1, the wire contract between the seqknock
// client and server: the TCP initial sequence number a client must put in its
// SYN for a key, realm, port, time counter and slot.
//
// The package is pure. It reads no clock and does no I/O: every function that
// depends on time takes the time as a parameter, so the same inputs always
// give the same outputs. Key files live in the keyfile subpackage.
//
// The derivation (docs/design.md, "ISN-v1"):
//
//	msg = "seqknock/isn/v1" || u8(len(realm)) || realm
//	      || u16be(port) || u64be(counter) || u8(slot)
//	mac = HMAC-SHA256(key, msg)
//	isn = u32be(mac[0:4]), or 1 where that is 0
//
// Fingerprint names a key for people to compare (client and server show
// the same string) without revealing it or anything about its knocks.
package totp
