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
// tested here.
func TestProxyRelaysAppStreams(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Setenv("XDG_STATE_HOME", t.TempDir())
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
	var out, errOut bytes.Buffer
	code := run([]string{"seqknock", "proxy", "--key-file", writeKey(t, bytes.Repeat([]byte{7}, 32)), "127.0.0.1", port},
		strings.NewReader("hello"), &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if s := <-got; s != "hello" {
		t.Errorf("server got %q, want the app's reader's %q", s, "hello")
	}
	if out.String() != "reply to hello" {
		t.Errorf("app's writer got %q", out.String())
	}
}
