// Package benchrelay is the relay of figure 1's baselines
// (scripts/bench/relay and scripts/bench/clirelay): what seqknock proxy
// does once connected, with no knock. It imports net, io and os only.
package benchrelay

import (
	"io"
	"net"
	"os"
)

// Relay connects to host:port and copies stdin to the connection (then
// half-closes it, as seqknock proxy does) and the connection to stdout.
func Relay(host, port string) error {
	c, err := net.Dial("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return err
	}
	go func() {
		io.Copy(c, os.Stdin)
		c.(*net.TCPConn).CloseWrite()
	}()
	_, err = io.Copy(os.Stdout, c)
	return err
}
