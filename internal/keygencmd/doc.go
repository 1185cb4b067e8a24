// Package keygencmd is the keygen command shared by seqknock and seqknockd:
// it writes a new key file and, with --stanzas, prints the server's
// [[user]] and the client's [[host]] stanza that name it. Administrators
// run seqknockd's (under sudo); seqknock's is for a user's own keys and
// refuses to run elevated.
package keygencmd
