// Command seqknockd is the seqknock server: it keeps the knocks that are
// valid now in an nftables set, so the kernel admits a SYN to a protected
// port only when its sequence number is a valid, unused knock.
package main

import (
	"os"

	// Empty but in the coverage builds the tests make.
	_ "github.com/seqknock/seqknock/internal/covhook"
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}
