// Command seqknock is the seqknock client: it opens TCP connections whose SYN
// carries the knock the server expects, for OpenSSH's ProxyCommand and
// friends, and manages key files.
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr))
}
