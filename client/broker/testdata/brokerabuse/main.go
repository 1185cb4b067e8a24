// Command brokerabuse plays a member of the broker's group who sends the
// broker requests no seqknock client sends, for the broker's attack
// tests. It runs as the user the test starts it as.
//
//	brokerabuse lowport PATH PORT
//	    asks for source port PORT (below 1024, which no knock reserves) on
//	    a fresh IPv4 socket; on "ok", listens on it and prints
//	    "listening on PORT", else "refused: ..." (the broker's answer).
//	brokerabuse reuserace PATH FAMILY PORT DURATION
//	    for DURATION, sends fresh sockets (FAMILY 4, 6 or mapped: an IPv6
//	    socket that binds ::ffff:127.0.0.1) while a second thread flips
//	    SO_REUSEADDR and SO_REUSEPORT on and tries bind(loopback:PORT) +
//	    listen() on the same socket; prints the counts.
//	brokerabuse fill PATH N
//	    holds N listeners of its own on ports from 32768-60999 (every one
//	    not in use), then prints "filled" and waits for stdin to close.
//	brokerabuse serve PORT
//	    another user's service: listens on [::]:PORT (IPv4 and IPv6),
//	    prints "serving", and answers "victim" to each connection.
//	brokerabuse connrace PATH DURATION
//	    for DURATION, sends fresh sockets while a second thread spins
//	    connect(127.0.0.1:L) (a listener of its own) on the same socket
//	    and, once connected, write(); prints how many connects landed in
//	    repair mode (no handshake), how many writes went out after repair
//	    mode was off, how many of those sockets the broker answered "ok",
//	    and how many connections the listener accepted.
//	brokerabuse dials PATH N [LO HI]
//	    asks the broker N times for a fresh socket's ISN (no source port)
//	    and prints how many were answered ok, and how many of those the
//	    broker bound to a port in LO-HI.
//	brokerabuse clientdials PATH N [LO HI]
//	    the same through broker.Client.SetISNFrom, as a seqknock dial
//	    asks (the port picked in this namespace); also prints the lowest
//	    and highest port bound.
package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/seqknock/seqknock/client/broker"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: brokerabuse lowport|reuserace|fill|dials PATH ...")
		os.Exit(2)
	}
	path := os.Args[2]
	switch os.Args[1] {
	case "lowport":
		lowport(path, atoi(os.Args[3]))
	case "reuserace":
		d, _ := time.ParseDuration(os.Args[5])
		reuserace(path, os.Args[3], atoi(os.Args[4]), d)
	case "fill":
		fill(atoi(os.Args[3]))
	case "serve":
		serve(atoi(os.Args[2]))
	case "connrace":
		d, _ := time.ParseDuration(os.Args[3])
		connrace(path, d)
	case "dials":
		lo, hi := 0, -1
		if len(os.Args) > 5 {
			lo, hi = atoi(os.Args[4]), atoi(os.Args[5])
		}
		dials(path, atoi(os.Args[3]), lo, hi)
	case "clientdials":
		lo, hi := 0, -1
		if len(os.Args) > 5 {
			lo, hi = atoi(os.Args[4]), atoi(os.Args[5])
		}
		clientDials(path, atoi(os.Args[3]), lo, hi)
	default:
		os.Exit(2)
	}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	return n
}

// ask sends one set-ISN request for fd with sport and returns the
// answer (the greeting skipped).
func ask(path string, fd int, isn uint32, sport uint16) string {
	c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "socket: " + err.Error()
	}
	defer unix.Close(c)
	if err := unix.Connect(c, &unix.SockaddrUnix{Name: path}); err != nil {
		return "connect: " + err.Error()
	}
	msg := make([]byte, 10)
	copy(msg, "skb1")
	binary.BigEndian.PutUint32(msg[4:], isn)
	binary.BigEndian.PutUint16(msg[8:], sport)
	if err := unix.Sendmsg(c, msg, unix.UnixRights(fd), nil, 0); err != nil {
		return "sendmsg: " + err.Error()
	}
	unix.Shutdown(c, unix.SHUT_WR)
	buf := make([]byte, 512)
	var last string
	for range 2 {
		n, err := unix.Read(c, buf)
		if err != nil || n <= 0 {
			break
		}
		last = string(buf[:n])
		if last != "ok" {
			break
		}
	}
	return last
}

func lowport(path string, port int) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		fmt.Println("socket:", err)
		os.Exit(1)
	}
	ans := ask(path, fd, 12345, uint16(port))
	if ans != "ok" {
		fmt.Println(ans)
		return
	}
	sa, _ := unix.Getsockname(fd)
	got := sa.(*unix.SockaddrInet4).Port
	if err := unix.Listen(fd, 16); err != nil {
		fmt.Printf("bound to %d, listen: %v\n", got, err)
		return
	}
	fmt.Printf("listening on %d\n", got)
	// Serves until killed: a client of the port gets this.
	for {
		nfd, _, err := unix.Accept(fd)
		if err == nil {
			unix.Write(nfd, []byte("attacker\n"))
			unix.Close(nfd)
		}
	}
}

func reuserace(path, family string, port int, d time.Duration) {
	var tries, ok, binds, listens int
	start := time.Now()
	for time.Since(start) < d {
		dom := unix.AF_INET
		var sa unix.Sockaddr = &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
		switch family {
		case "6":
			dom = unix.AF_INET6
			sa = &unix.SockaddrInet6{Port: port, Addr: [16]byte{15: 1}}
		case "mapped":
			dom = unix.AF_INET6
			sa = &unix.SockaddrInet6{Port: port, Addr: [16]byte{10: 0xff, 11: 0xff, 12: 127, 15: 1}}
		}
		fd, err := unix.Socket(dom, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fmt.Println("socket:", err)
			os.Exit(1)
		}
		var stop atomic.Bool
		got := make(chan [2]bool, 1)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for !stop.Load() {
				unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
				unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
				if unix.Bind(fd, sa) == nil {
					got <- [2]bool{true, unix.Listen(fd, 16) == nil}
					return
				}
			}
			got <- [2]bool{false, false}
		}()
		ans := ask(path, fd, uint32(tries+1), 0)
		stop.Store(true)
		r := <-got
		tries++
		if ans == "ok" {
			ok++
		}
		if r[0] {
			binds++
		}
		if r[1] {
			listens++
		}
		unix.Close(fd)
	}
	fmt.Printf("tries=%d ok=%d binds=%d listens=%d\n", tries, ok, binds, listens)
}

func serve(port int) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
		err = unix.Bind(fd, &unix.SockaddrInet6{Port: port})
	}
	if err == nil {
		err = unix.Listen(fd, 128)
	}
	if err != nil {
		fmt.Println("serve:", err)
		os.Exit(1)
	}
	fmt.Println("serving")
	for {
		nfd, _, err := unix.Accept(fd)
		if err == nil {
			unix.Write(nfd, []byte("victim\n"))
			unix.Close(nfd)
		}
	}
}

func fill(n int) {
	var lim unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	lim.Cur = lim.Max
	unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	held := 0
	for p := 32768; p <= 60999 && held < n; p++ {
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fmt.Println("socket:", err)
			os.Exit(1)
		}
		if unix.Bind(fd, &unix.SockaddrInet6{Port: p}) != nil || unix.Listen(fd, 1) != nil {
			unix.Close(fd)
			continue
		}
		held++
	}
	fmt.Printf("filled %d\n", held)
	buf := make([]byte, 1)
	os.Stdin.Read(buf)
}

func dials(path string, n, lo, hi int) {
	ok, in := 0, 0
	var last string
	for range n {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fmt.Println("socket:", err)
			os.Exit(1)
		}
		if ans := ask(path, fd, 1, 0); ans == "ok" {
			ok++
			if sa, err := unix.Getsockname(fd); err == nil {
				if p := sa.(*unix.SockaddrInet4).Port; p >= lo && p <= hi {
					in++
				}
			}
		} else {
			last = ans
		}
		unix.Close(fd)
	}
	fmt.Printf("ok=%d of %d in=%d; %s\n", ok, n, in, last)
}

func clientDials(path string, n, lo, hi int) {
	bc := &broker.Client{Path: path}
	ok, in, low, high := 0, 0, 65536, 0
	var last string
	for range n {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fmt.Println("socket:", err)
			os.Exit(1)
		}
		if err := bc.SetISNFrom(fd, 1, 0); err == nil {
			ok++
			if sa, err := unix.Getsockname(fd); err == nil {
				p := sa.(*unix.SockaddrInet4).Port
				if p >= lo && p <= hi {
					in++
				}
				low, high = min(low, p), max(high, p)
			}
		} else {
			last = err.Error()
		}
		unix.Close(fd)
	}
	fmt.Printf("ok=%d of %d in=%d low=%d high=%d; %s\n", ok, n, in, low, high, last)
}

func connrace(path string, d time.Duration) {
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err == nil {
		err = unix.Bind(lfd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	}
	if err == nil {
		err = unix.Listen(lfd, 4096)
	}
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	lsa, _ := unix.Getsockname(lfd)
	dst := &unix.SockaddrInet4{Port: lsa.(*unix.SockaddrInet4).Port, Addr: [4]byte{127, 0, 0, 1}}
	var tries, ok, inRepair, wroteOff, okEstablished, accepted int
	start := time.Now()
	for time.Since(start) < d {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fmt.Println("socket:", err)
			os.Exit(1)
		}
		var stop atomic.Bool
		got := make(chan [2]bool, 1)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var repaired, wrote bool
			for !stop.Load() {
				if unix.Connect(fd, dst) != nil {
					continue
				}
				v, _ := unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR)
				repaired = v == 1
				if !repaired {
					break // a real handshake: nothing gained
				}
				for !stop.Load() {
					v, _ := unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR)
					if _, err := unix.Write(fd, []byte("x")); err != nil {
						break
					}
					if v == 0 {
						wrote = true
						break
					}
				}
				break
			}
			got <- [2]bool{repaired, wrote}
		}()
		ans := ask(path, fd, uint32(tries+1), 0)
		stop.Store(true)
		r := <-got
		tries++
		if ans == "ok" {
			ok++
			if info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO); err == nil && info.State == 1 && r[0] {
				okEstablished++
			}
		}
		if r[0] {
			inRepair++
		}
		if r[1] {
			wroteOff++
		}
		unix.Close(fd)
		for {
			nfd, _, err := unix.Accept(lfd)
			if err != nil {
				break
			}
			accepted++
			unix.Close(nfd)
		}
	}
	fmt.Printf("tries=%d ok=%d inrepair=%d wroteoff=%d okestablished=%d accepted=%d\n", tries, ok, inRepair, wroteOff, okEstablished, accepted)
}
