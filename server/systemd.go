package server

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// SdNotify sends state (such as "READY=1" or "WATCHDOG=1") to the service
// manager over the datagram socket named by $NOTIFY_SOCKET, as sd_notify(3)
// does. Without $NOTIFY_SOCKET (not run by systemd) it does nothing.
func SdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract namespace
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// WatchdogTimeout returns systemd's watchdog timeout for this process
// ($WATCHDOG_USEC, when $WATCHDOG_PID is unset or names this process), or 0.
func WatchdogTimeout() time.Duration {
	if p := os.Getenv("WATCHDOG_PID"); p != "" && p != strconv.Itoa(os.Getpid()) {
		return 0
	}
	us, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || us <= 0 {
		return 0
	}
	return time.Duration(us) * time.Microsecond
}
