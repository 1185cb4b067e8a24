package totp

import (
	"crypto/sha256"
	"encoding/base64"
)

// fingerprintLabel separates the fingerprint's hash from every other use
// of a key: ISN-v1 uses the key only as an HMAC key, never hashed with
// this prefix, so a fingerprint tells nothing about any knock.
const fingerprintLabel = "seqknock/fingerprint/v1"

// Fingerprint is a short name for key that may be shown and compared
// without showing the key, as OpenSSH shows a key's fingerprint:
//
//	"SHA256:" || unpadded base64(SHA-256("seqknock/fingerprint/v1" || key)[0:16])
//
// Client (seqknock fingerprint) and server show the same string for the
// same key. It is not secret: it is a one-way hash of a random key of at
// least 16 bytes under its own label, so it does not help to derive a
// knock or to guess the key.
func Fingerprint(key []byte) string {
	h := sha256.New()
	h.Write([]byte(fingerprintLabel))
	h.Write(key)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(h.Sum(nil)[:16])
}
