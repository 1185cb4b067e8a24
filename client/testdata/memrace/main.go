// Command memrace is an attacker for the tests of seqknock under sudo: run
// as the unprivileged user, it holds the user's slot file locked, starts
// `sudo ARGS...` (a seqknock that connects), finds the seqknock process of
// the user that holds a capability (blocked on the lock), and tries to get
// at it: it reports "dumpable" when /proc/PID/environ is the user's (the process
// is dumpable while it holds CAP_NET_ADMIN). It then releases the lock and,
// while seqknock connects and drops its capabilities thread by thread,
// keeps trying to open /proc/PID/task/TID/mem read-write: "won" when that
// succeeds while some thread still holds a capability, "opened" when it
// succeeds only after, "sealed" when it never does. It ends the process.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func status(path string) map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// target is a process of ours, not this one, holding a capability.
func target(uid string) int {
	ds, _ := os.ReadDir("/proc")
	for _, d := range ds {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		s := status(filepath.Join("/proc", d.Name(), "status"))
		if s != nil && s["Uid"] == strings.Repeat(uid+"\t", 3)+uid && s["CapPrm"] != "0000000000000000" {
			return pid
		}
	}
	return 0
}

func tasks(pid int) []string {
	ds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var out []string
	for _, d := range ds {
		out = append(out, d.Name())
	}
	return out
}

// held says whether any thread of pid holds a capability.
func held(pid int) bool {
	for _, tid := range tasks(pid) {
		if s := status(fmt.Sprintf("/proc/%d/task/%s/status", pid, tid)); s != nil && s["CapPrm"] != "0000000000000000" {
			return true
		}
	}
	return false
}

// tryMem opens the memory of any thread of pid read-write.
func tryMem(pid int) bool {
	for _, tid := range tasks(pid) {
		f, err := os.OpenFile(fmt.Sprintf("/proc/%d/task/%s/mem", pid, tid), os.O_RDWR, 0)
		if err == nil {
			f.Close()
			return true
		}
	}
	return false
}

func main() {
	home, _ := os.UserHomeDir()
	dir := filepath.Join(home, ".local", "state", "seqknock")
	os.MkdirAll(dir, 0o700)
	lock, err := os.OpenFile(filepath.Join(dir, "slots.json"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	syscall.Flock(int(lock.Fd()), syscall.LOCK_EX)
	cmd := exec.Command("sudo", os.Args[1:]...)
	stdin, _ := cmd.StdinPipe() // kept open: the relay waits on it
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	uid := strconv.Itoa(os.Getuid())
	pid := 0
	for deadline := time.Now().Add(15 * time.Second); pid == 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		pid = target(uid)
	}
	if pid == 0 {
		fmt.Println("no-target")
		os.Exit(1)
	}
	fmt.Println("target")
	// Let it reach the lock: from its execve up to there every thread
	// holds the capability, so none of them may be traced anyway.
	time.Sleep(500 * time.Millisecond)
	var st syscall.Stat_t
	if syscall.Stat(fmt.Sprintf("/proc/%d/environ", pid), &st) == nil && strconv.Itoa(int(st.Uid)) == uid {
		fmt.Println("dumpable")
	}
	if tryMem(pid) {
		fmt.Println("won: mem opened before the connect")
	}
	syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	result := "sealed"
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		before := held(pid)
		if tryMem(pid) {
			// Capabilities never come back: held now means held at the open.
			if held(pid) {
				result = "won"
			} else {
				result = "opened"
			}
			break
		}
		if !before {
			// Every thread has dropped: one last try, then done.
			if tryMem(pid) {
				result = "opened"
			}
			break
		}
	}
	fmt.Println(result)
	syscall.Kill(pid, syscall.SIGKILL)
	stdin.Close()
	cmd.Wait()
}
