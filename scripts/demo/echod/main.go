// Command echod is the demo's protected service: it greets every connection
// with one line and closes it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
)

func main() {
	addr := flag.String("listen", ":2222", "address to listen on")
	flag.Parse()
	// Plain TCP: Go listens with Multipath TCP by default, and the kernel
	// takes no socket filter on an MPTCP listener, so seqknockd could not
	// lock it (docs/design.md, "Listener lock").
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Fprintf(c, "hello from the protected service (you are %s)\n", c.RemoteAddr())
		c.Close()
	}
}
