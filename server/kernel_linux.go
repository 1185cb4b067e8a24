//go:build linux

package server

import "github.com/seqknock/seqknock/nftgen"

// NewKernel returns the Kernel for the network namespace netns (0: the
// current one).
func NewKernel(netns int) Kernel {
	c := &nftgen.Conn{NetNS: netns}
	return Kernel{
		Apply:    c.Apply,
		Read:     c.Read,
		Counters: c.ReadCounters,
		Teardown: c.Teardown,
	}
}
