//go:build linux

package main

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// TestProxyRelaysAppStreams: proxy relays the app's reader and writer
// (what run was given), not the process's stdin and stdout. Over loopback,
// as root, with no table in the way: the knock itself is not what is
// tested here. With and without "--" before the operands.
func TestProxyRelaysAppStreams(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	key := writeKey(t, bytes.Repeat([]byte{7}, 32))
	for _, dashes := range []bool{false, true} {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		got := make(chan string, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- err.Error()
				return
			}
			defer c.Close()
			b, _ := io.ReadAll(c)
			got <- string(b)
			c.Write([]byte("reply to " + string(b)))
		}()
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		args := []string{"--key-file", key, "127.0.0.1", port}
		if dashes {
			args = []string{"--key-file", key, "--", "127.0.0.1", port}
		}
		var out, errOut bytes.Buffer
		code := run(append([]string{"seqknock", "proxy"}, args...), strings.NewReader("hello"), &out, &errOut)
		if code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, errOut.String())
		}
		if s := <-got; s != "hello" {
			t.Errorf("%q: server got %q, want the app's reader's %q", args, s, "hello")
		}
		if out.String() != "reply to hello" {
			t.Errorf("%q: app's writer got %q", args, out.String())
		}
	}
}
