// Command echoseq is the broker benchmark's floor: a process that serves
// a Unix SOCK_SEQPACKET socket with the least work a server can do (a
// locked thread at SCHED_BATCH, poll, accept4, one read, one answer,
// close) and nothing else, so a round trip to it is the least a broker
// request can cost on this machine.
//
//	echoseq PATH
package main

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: echoseq PATH")
		os.Exit(2)
	}
	runtime.LockOSThread()
	if attr, err := unix.SchedGetAttr(0, 0); err == nil {
		attr.Policy = unix.SCHED_BATCH
		unix.SchedSetAttr(0, attr, 0)
	}
	os.Remove(os.Args[1])
	lfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err == nil {
		err = unix.Bind(lfd, &unix.SockaddrUnix{Name: os.Args[1]})
	}
	if err == nil {
		err = unix.Listen(lfd, 128)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "echoseq:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	pfd := []unix.PollFd{{Fd: int32(lfd), Events: unix.POLLIN}}
	buf := make([]byte, 64)
	for {
		if _, err := unix.Poll(pfd, -1); err != nil && err != unix.EINTR {
			os.Exit(1)
		}
		cfd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
		if err != nil {
			continue
		}
		n, _, _, _, err := unix.Recvmsg(cfd, buf, nil, unix.MSG_DONTWAIT)
		if err == unix.EAGAIN {
			// Accepted on the other CPU before the request was sent.
			unix.Poll([]unix.PollFd{{Fd: int32(cfd), Events: unix.POLLIN}}, 1000)
			n, _, _, _, err = unix.Recvmsg(cfd, buf, nil, unix.MSG_DONTWAIT)
		}
		if err == nil {
			unix.Sendmsg(cfd, buf[:n], nil, nil, unix.MSG_DONTWAIT)
		}
		unix.Close(cfd)
	}
}
