// Package keyfile reads and writes seqknock key files, shared by the server
// and the client.
//
// A key file holds one line: the standard base64 of a 16 to 64 byte key.
// Generate writes 32 bytes from crypto/rand with mode 0600. Load refuses a
// file that group or others can read, as OpenSSH refuses such private keys,
// and its errors name the file but never show key material.
package keyfile
