// Command echod is the demo's protected service: it greets every connection
// with one line and closes it.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
)

func main() {
	addr := flag.String("listen", ":2222", "address to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
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
