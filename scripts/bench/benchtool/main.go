// Command benchtool is the bench driver's helper (scripts/bench/run.sh),
// run inside the bench's network namespaces:
//
//	benchtool serve ADDR...          accept on each ADDR, send one line per connection
//	benchtool ttfb N SPEC.json       time to first byte, methods interleaved, JSON out
//	benchtool flood SRC ADDR PORT N SECS random-ISN SYNs from a raw socket bound to SRC, bounded (SIGTERM ends it early)
//
// It is not part of the product: it only measures it.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/totp/keyfile"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: benchtool serve|ttfb|flood ...")
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "ttfb":
		err = ttfb(os.Args[2], os.Args[3])
	case "flood":
		err = flood(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "benchtool:", msg)
	os.Exit(1)
}

func serve(addrs []string) error {
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("SSH-2.0-bench\r\n"))
				go func() { io.Copy(io.Discard, c); c.Close() }()
			}
		}()
	}
	select {}
}

// Method is one way to reach the service, as the spec file lists them.
type Method struct {
	Name string `json:"name"`
	// Cmd: a process whose stdout carries the service's first byte.
	Cmd []string `json:"cmd,omitempty"`
	// User: Cmd runs as this user (its uid, group and groups, set by the
	// fork before exec, so no extra program runs), with HOME its home.
	User string `json:"user,omitempty"`
	// Pre: a process run to completion first (a knock). After Pre or
	// Knock, Connect is dialled once (the kernel's SYN retransmission is
	// the wait), or every RetryMS with that timeout per attempt.
	Pre []string `json:"pre,omitempty"`
	// Knock: ports to knock on first, in this process (no program run),
	// as knockd's knock client does it: from the turn's source address
	// (Srcs), one non-blocking connect per port, closed at once, so each
	// port gets one SYN. knock itself cannot choose its source address.
	Knock   []int  `json:"knock,omitempty"`
	Connect string `json:"connect,omitempty"`
	RetryMS int    `json:"retry_ms,omitempty"`
	// Srcs: source addresses, one per turn in order, written for {src}
	// in Pre and bound for the connect (so a peer's opening for the
	// previous turn's address does not help this one).
	Srcs []string `json:"srcs,omitempty"`
	// KeyFile, Slots, Period: the in-process seqknock dialer to Connect.
	KeyFile string `json:"key_file,omitempty"`
	Slots   int    `json:"slots,omitempty"`
	Period  string `json:"period,omitempty"`
	// SlotFrom: the dialer's first slot in each period. Each benchtool
	// process counts its slots from here, in memory: processes that dial
	// with the same key in one period must start apart (figure 4's
	// rounds), or the later one sends knocks the earlier one spent, which
	// the server drops as replays, and its dials wait for the next period.
	SlotFrom int `json:"slot_from,omitempty"`
	// Beside: methods next to each other in the list with the same
	// non-empty Beside take their turn of a round at the same time (each
	// still timed on its own), for methods that spend their turn waiting
	// (the kernel's 1 s SYN retransmission) rather than working.
	Beside string `json:"beside,omitempty"`
}

// besideGap is how long after each other the methods of a "beside" group
// start their turns.
const besideGap = 100 * time.Millisecond

// oneConnectTimeout bounds a method's single connect after its knock
// (Pre without RetryMS); a turn without a connection by then is an error.
const oneConnectTimeout = 4 * time.Second

// Result is one method's times, in milliseconds.
type Result struct {
	Name   string    `json:"name"`
	N      int       `json:"n"`
	Errors int       `json:"errors"`
	Median float64   `json:"median_ms"`
	P95    float64   `json:"p95_ms"`
	All    []float64 `json:"-"`
}

func ttfb(nStr, specPath string) error {
	n, err := strconv.Atoi(nStr)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	var ms []Method
	if err := json.Unmarshal(b, &ms); err != nil {
		return err
	}
	dialers := make([]*client.Dialer, len(ms))
	for i, m := range ms {
		if m.KeyFile != "" {
			k, err := keyfile.Load(m.KeyFile)
			if err != nil {
				return err
			}
			p, _ := time.ParseDuration(m.Period)
			// Each connection takes the next slot of the period, as the
			// proxy's slot store gives them.
			next := map[uint64]int{}
			from := m.SlotFrom
			reserve := func(_ string, counter uint64, slots int) (int, error) {
				s := max(next[counter], from)
				if s >= slots {
					return 0, client.ErrSlotsSpent
				}
				next[counter] = s + 1
				return s, nil
			}
			dialers[i] = &client.Dialer{Key: k, Slots: m.Slots, Period: p, SynTimeout: time.Second, Network: "tcp4", Reserve: reserve}
		}
	}
	res := make([]Result, len(ms))
	turn := func(i, j int) {
		m := ms[j]
		src := ""
		if len(m.Srcs) > 0 {
			src = m.Srcs[i%len(m.Srcs)]
		}
		d, err := once(m, dialers[j], src)
		res[j].Name = m.Name
		if err != nil {
			res[j].Errors++
			if res[j].Errors <= 3 {
				fmt.Fprintf(os.Stderr, "benchtool: %s: %v\n", m.Name, err)
			}
			return
		}
		res[j].All = append(res[j].All, float64(d.Microseconds())/1000)
	}
	for i := 0; i < n; i++ { // A B C D A B C D ...
		for j := 0; j < len(ms); {
			k := j + 1
			for k < len(ms) && ms[j].Beside != "" && ms[k].Beside == ms[j].Beside {
				k++
			}
			var wg sync.WaitGroup
			for jj := j; jj < k; jj++ {
				if jj > j {
					// Apart by besideGap, so one's knock packets do
					// not land in the middle of the other's (knockd
					// resets a sequence that another packet
					// interrupts).
					time.Sleep(besideGap)
				}
				wg.Add(1)
				go func() { defer wg.Done(); turn(i, jj) }()
			}
			wg.Wait()
			j = k
		}
	}
	for j := range res {
		a := res[j].All
		sort.Float64s(a)
		res[j].N = len(a)
		if len(a) > 0 {
			res[j].Median = a[len(a)/2]
			res[j].P95 = a[min(len(a)-1, len(a)*95/100)]
		}
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

func once(m Method, d *client.Dialer, src string) (time.Duration, error) {
	nd := &net.Dialer{}
	if src != "" {
		nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	start := time.Now()
	if len(m.Cmd) > 0 {
		cmd := exec.Command(m.Cmd[0], m.Cmd[1:]...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			return 0, err
		}
		in, _ := cmd.StdinPipe()
		if m.User != "" {
			if err := runAs(cmd, m.User); err != nil {
				return 0, err
			}
		}
		start = time.Now()
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		defer func() { in.Close(); cmd.Process.Kill(); cmd.Wait() }()
		one := make([]byte, 1)
		done := make(chan error, 1)
		go func() { _, err := out.Read(one); done <- err }()
		select {
		case err := <-done:
			return time.Since(start), err
		case <-time.After(10 * time.Second):
			return 0, fmt.Errorf("no byte in 10s")
		}
	}
	var c net.Conn
	var err error
	switch {
	case d != nil:
		ap := netip.MustParseAddrPort(m.Connect)
		var tc *net.TCPConn
		tc, err = d.Dial(context.Background(), ap.Addr().String(), ap.Port())
		c = tc
	default:
		if len(m.Knock) > 0 {
			if err := knockSYNs(src, m.Connect, m.Knock); err != nil {
				return 0, err
			}
		}
		if len(m.Pre) > 0 {
			args := make([]string, len(m.Pre))
			for k, a := range m.Pre {
				args[k] = strings.ReplaceAll(a, "{src}", src)
			}
			if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
				return 0, fmt.Errorf("%v: %v: %s", m.Pre, err, out)
			}
		}
		if m.RetryMS > 0 {
			deadline := time.Now().Add(10 * time.Second)
			for {
				nd.Timeout = time.Duration(m.RetryMS) * time.Millisecond
				c, err = nd.Dial("tcp", m.Connect)
				if err == nil || time.Now().After(deadline) {
					break
				}
				if rest := time.Duration(m.RetryMS)*time.Millisecond - time.Since(start)%(time.Duration(m.RetryMS)*time.Millisecond); rest > 0 && rest < time.Duration(m.RetryMS)*time.Millisecond {
					time.Sleep(rest / 2)
				}
			}
		} else {
			// Past the kernel's SYN retransmissions at 1, 2 and 3 s
			// after the first SYN (tcp_syn_linear_timeouts is 4 on this
			// kernel; at 1 and 3 s where it is 0): a peer that has not
			// opened by then missed the knock, and waiting 10 s for it
			// cost the bench 10 s a miss.
			nd.Timeout = oneConnectTimeout
			c, err = nd.Dial("tcp", m.Connect)
		}
	}
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	one := make([]byte, 1)
	if _, err := c.Read(one); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// flood sends count SYNs with random sequence numbers and source ports from
// a raw socket bound to src, to addr:port, for at most secs seconds or until
// SIGTERM, and prints how many it sent.
func flood(args []string) error {
	if len(args) != 5 {
		return fmt.Errorf("flood SRC ADDR PORT COUNT SECS")
	}
	src := netip.MustParseAddr(args[0]).As4()
	dst := netip.MustParseAddr(args[1]).As4()
	port, _ := strconv.Atoi(args[2])
	count, _ := strconv.Atoi(args[3])
	secs, _ := strconv.Atoi(args[4])
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src}); err != nil {
		return err
	}
	to := &unix.SockaddrInet4{Addr: dst}
	pkt := make([]byte, 20)
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, unix.SIGTERM)
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return !time.Now().Before(deadline)
		}
	}
	sent := 0
	for sent < count && (sent%1024 != 0 || !stopped()) {
		binary.BigEndian.PutUint16(pkt[0:], uint16(1024+rand.IntN(60000)))
		binary.BigEndian.PutUint16(pkt[2:], uint16(port))
		binary.BigEndian.PutUint32(pkt[4:], rand.Uint32())
		binary.BigEndian.PutUint32(pkt[8:], 0)
		pkt[12] = 5 << 4
		pkt[13] = 0x02 // SYN
		binary.BigEndian.PutUint16(pkt[14:], 64240)
		pkt[16], pkt[17] = 0, 0
		binary.BigEndian.PutUint16(pkt[16:], tcpSum(src, dst, pkt))
		if err := unix.Sendto(fd, pkt, 0, to); err != nil && err != unix.ENOBUFS {
			return err
		}
		sent++
	}
	fmt.Println(sent)
	return nil
}

func tcpSum(src, dst [4]byte, seg []byte) uint16 {
	var s uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			s += uint32(b[i])<<8 | uint32(b[i+1])
		}
	}
	add(src[:])
	add(dst[:])
	s += unix.IPPROTO_TCP + uint32(len(seg))
	add(seg)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// runAs makes cmd run as the user name: its uid, primary group and
// groups, and HOME its home.
func runAs(cmd *exec.Cmd, name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return err
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	gids, err3 := u.GroupIds()
	if err := errors.Join(err1, err2, err3); err != nil {
		return fmt.Errorf("user %s: %w", name, err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	for _, g := range gids {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return fmt.Errorf("user %s: %w", name, err)
		}
		cred.Groups = append(cred.Groups, uint32(n))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "HOME="+u.HomeDir)
	return nil
}

// knockSYNs sends one SYN to each of ports on connect's host, in order,
// from src (any address when empty), as knockd's knock client does: a
// non-blocking connect, closed at once (the SYN is sent within connect).
func knockSYNs(src, connect string, ports []int) error {
	host, _, err := net.SplitHostPort(connect)
	if err != nil {
		return err
	}
	dst, err := netip.ParseAddr(host)
	if err != nil || !dst.Is4() {
		return fmt.Errorf("knock: %q: want an IPv4 address", host)
	}
	var from netip.Addr
	if src != "" {
		if from, err = netip.ParseAddr(src); err != nil || !from.Is4() {
			return fmt.Errorf("knock: source %q: want an IPv4 address", src)
		}
	}
	for _, p := range ports {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("knock: %w", err)
		}
		if from.IsValid() {
			if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: from.As4()}); err != nil {
				unix.Close(fd)
				return fmt.Errorf("knock: bind %s: %w", src, err)
			}
		}
		err = unix.Connect(fd, &unix.SockaddrInet4{Port: p, Addr: dst.As4()})
		unix.Close(fd)
		if err != nil && err != unix.EINPROGRESS {
			return fmt.Errorf("knock: port %d: %w", p, err)
		}
	}
	return nil
}
