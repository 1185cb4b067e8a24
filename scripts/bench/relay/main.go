// Command relay is figure 1's baseline (scripts/bench/run.sh): a plain Go
// relay process, what ssh's ProxyCommand would run with no knock at all.
// It connects to HOST PORT and copies stdin to the connection (then
// half-closes it, as seqknock proxy does) and the connection to stdout.
// It imports the standard library alone (net, io, os, fmt), so its
// start-up is a Go program's and nothing more.
//
//	relay HOST PORT
//
// It is not part of the product: it only measures it.
package main

import (
	"fmt"
	"os"

	"github.com/seqknock/seqknock/scripts/bench/internal/benchrelay"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: relay HOST PORT")
		os.Exit(2)
	}
	if err := benchrelay.Relay(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
}
