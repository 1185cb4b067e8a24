package client

import (
	"errors"
	"io"
	"net"
)

// Relay copies in to conn and conn to out until both directions end. When in
// reaches EOF the connection's write side is shut (the peer sees EOF, and
// can still answer); when the peer closes, out is closed if it is an
// io.Closer. It returns the first error other than the normal end of a
// direction.
func Relay(conn *net.TCPConn, in io.Reader, out io.Writer) error {
	errc := make(chan error, 2)
	go func() {
		_, err := io.Copy(conn, in)
		if cerr := conn.CloseWrite(); err == nil {
			err = cerr
		}
		errc <- err
	}()
	go func() {
		_, err := io.Copy(out, conn)
		if c, ok := out.(io.Closer); ok {
			if cerr := c.Close(); err == nil {
				err = cerr
			}
		}
		conn.CloseRead()
		errc <- err
	}()
	var first error
	for i := 0; i < 2; i++ {
		if err := <-errc; err != nil && first == nil && !errors.Is(err, net.ErrClosed) {
			first = err
		}
	}
	return first
}
