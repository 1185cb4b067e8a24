package tcpsign

import (
	"errors"
	"fmt"
)

// The values of a config's sign key.
const (
	ModeMD5 = "tcp-md5"
	ModeAO  = "tcp-ao"
)

// MaxKeyLen is the longest TCP-MD5 key the kernel takes
// (TCP_MD5SIG_MAXKEYLEN).
const MaxKeyLen = 80

// ErrNoTCPAO is AOSupport's answer on a kernel without TCP-AO.
var ErrNoTCPAO = errors.New("this kernel has no TCP-AO (CONFIG_TCP_AO, Linux 6.7 or later); use sign = \"tcp-md5\"")

// errAONotBuilt is CheckMode's answer for tcp-ao on a kernel that has it.
var errAONotBuilt = errors.New("tcp-ao is not implemented in this version of seqknock; use sign = \"tcp-md5\"")

// CheckMode checks a config's sign value: "tcp-md5" is the one this
// version implements; "tcp-ao" is refused with why (the kernel lacks it,
// or seqknock does).
func CheckMode(mode string) error {
	switch mode {
	case ModeMD5:
		return nil
	case ModeAO:
		if err := AOSupport(); err != nil {
			return err
		}
		return errAONotBuilt
	}
	return fmt.Errorf("%q: want \"tcp-md5\"", mode)
}

// Key is a signing key; printing it shows no key material.
type Key []byte

// String never shows the key.
func (Key) String() string { return "(key)" }

// GoString never shows the key.
func (Key) GoString() string { return "(key)" }
