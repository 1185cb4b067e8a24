//go:build !linux

package tcpsign

// AOSupport: TCP-AO is Linux's only here.
func AOSupport() error { return ErrNoTCPAO }
