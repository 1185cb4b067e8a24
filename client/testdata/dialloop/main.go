// Command dialloop times dials the way a client process makes them, for
// BenchmarkDial: run in the client's network namespace as a process of
// its own (ip netns exec), so no thread of it is locked to a namespace,
// it takes turns of four: the in-process TCP_REPAIR dial, the dial through
// the broker at BROKER, net.Dial with the same per-attempt timeout, and a
// bare Unix round trip to ECHO (client/testdata/echoseq, the floor of a
// broker request), all to ADDR (an unprotected port: the server's rules
// are alike), and prints the median of each in nanoseconds, one per line:
// "in-process N", "broker N", "plain N", "echo N".
//
//	dialloop ADDR PORT BROKER ECHO TURNS
package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/client/broker"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) != 6 {
		fmt.Fprintln(os.Stderr, "usage: dialloop ADDR PORT BROKER ECHO TURNS")
		os.Exit(2)
	}
	addr := netip.MustParseAddr(os.Args[1])
	port, _ := strconv.Atoi(os.Args[2])
	turns, _ := strconv.Atoi(os.Args[5])
	key := []byte("dialloop-benchmark-key-012345678")
	newDialer := func() *client.Dialer {
		slot := 0
		return &client.Dialer{Key: key, Slots: 256, SynTimeout: 2 * time.Second,
			Resolve: func(context.Context, string, string) ([]netip.Addr, error) { return []netip.Addr{addr}, nil },
			Reserve: func(string, uint64, int) (int, error) { slot++; return (slot - 1) % 256, nil }}
	}
	inProcess, viaBroker := newDialer(), newDialer()
	bc := &broker.Client{Path: os.Args[3]}
	viaBroker.CheckCapability, viaBroker.SetISN = bc.Available, bc.SetISNFrom
	plain := &net.Dialer{Timeout: 2 * time.Second}
	target := net.JoinHostPort(addr.String(), os.Args[2])
	names := []string{"in-process", "broker", "plain", "echo"}
	runs := []func() error{
		func() error { return closed(inProcess.Dial(context.Background(), addr.String(), uint16(port))) },
		func() error { return closed(viaBroker.Dial(context.Background(), addr.String(), uint16(port))) },
		func() error { return closed(plain.Dial("tcp", target)) },
		func() error { return echo(os.Args[4]) },
	}
	took := make([][]time.Duration, len(runs))
	for i := 0; i < turns; i++ {
		for m, run := range runs {
			start := time.Now()
			if err := run(); err != nil {
				fmt.Fprintf(os.Stderr, "dialloop: %s, turn %d: %v\n", names[m], i, err)
				os.Exit(1)
			}
			took[m] = append(took[m], time.Since(start))
		}
	}
	for m, ds := range took {
		slices.Sort(ds)
		fmt.Println(names[m], ds[len(ds)/2].Nanoseconds())
	}
}

func closed[C interface{ Close() error }](c C, err error) error {
	if err != nil {
		return err
	}
	return c.Close()
}

// echo is a broker request without the broker's work: a SOCK_SEQPACKET
// socket, connect, send, poll, read, close.
func echo(path string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return err
	}
	if err := unix.Sendmsg(fd, []byte("skb1\x00\x00\x00\x01"), nil, nil, unix.MSG_DONTWAIT); err != nil {
		return err
	}
	var buf [16]byte
	for {
		n, _, _, _, err := unix.Recvmsg(fd, buf[:], nil, unix.MSG_DONTWAIT)
		if err == nil && n == 8 {
			return nil
		}
		if err != unix.EAGAIN && err != unix.EINTR {
			return fmt.Errorf("echo: %d bytes, %v", n, err)
		}
		if _, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 2000); err != nil && err != unix.EINTR {
			return err
		}
	}
}
