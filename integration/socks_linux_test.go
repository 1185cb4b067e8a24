//go:build linux

package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// socksWorld is a world whose server protects sshd (22) and an HTTP
// service (8080), and whose client namespace runs `seqknock socks` as
// root, resolving srv.test (IPv4) and srv6.test (IPv6) from a hosts file
// of its own.
type socksWorld struct {
	*world
	socks    *exec.Cmd
	log      *netnstest.Buffer
	sockPath string
	clientCf string
}

const socksServerConfig = `period = "10s"
tolerance = 1
slots = 64
realm = "lab"
[[service]]
port = 22
[[service]]
port = 8080
[[user]]
name = "alice"
key_file = "alice.key"
`

func newSocksWorld(t *testing.T, subnet int) *socksWorld {
	return newSocksWorldWith(t, subnet, "", "")
}

// newSocksWorldWith is newSocksWorld with service22 added to the server's
// port 22 service and host22 to the client's [[host]] entries for it.
func newSocksWorldWith(t *testing.T, subnet int, service22, host22 string) *socksWorld {
	t.Helper()
	netnstest.RequireRoot(t, "nc", "curl", "python3", "unshare", "mount", "nft")
	w := &socksWorld{world: newWorld(t, subnet, 10*time.Second), log: &netnstest.Buffer{}}
	os.WriteFile(w.path("seqknockd.toml"), []byte(strings.Replace(socksServerConfig, "port = 22\n", "port = 22\n"+service22, 1)), 0o600)
	w.writeKey("ssh.sign", signKey) // for a signed service22
	os.MkdirAll(w.path("www"), 0o755)
	os.WriteFile(w.path("www/hello.txt"), []byte("hello through the knock\n"), 0o644)
	web := w.srv.Command("python3", "-m", "http.server", "8080", "--bind", "::", "--directory", w.path("www"))
	web.Stderr = &netnstest.Buffer{}
	if err := web.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { web.Process.Kill(); web.Wait() })
	w.startDaemon()
	deadline := time.Now().Add(10 * time.Second)
	for out, _ := w.srv.Run("ss", "-Hltn", "sport = :8080"); !strings.Contains(out, "LISTEN"); out, _ = w.srv.Run("ss", "-Hltn", "sport = :8080") {
		if time.Now().After(deadline) {
			t.Fatalf("http.server did not listen: %s", web.Stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The daemon has locked the listeners, and signed sshd's for a
	// signed service22, once status is current (it waits for that).
	w.status(t)
	// other.test is a name no [[host]] covers, at the server's address.
	hosts := fmt.Sprintf("127.0.0.1 localhost\n%s srv.test other.test\n%s srv6.test\n", w.cl.A4, w.cl.A6)
	os.WriteFile(w.path("hosts"), []byte(hosts), 0o644)
	os.WriteFile(w.path("socks.pass"), []byte("right-password\n"), 0o600)
	entry := func(match string, port int) string {
		s := fmt.Sprintf("[[host]]\nmatch = %q\nkey_file = %q\nrealm = \"lab\"\nperiod = \"10s\"\nslots = 64\n", match, w.path("alice.key"))
		if port != 0 {
			s += fmt.Sprintf("port = %d\n", port)
		}
		return s
	}
	// The server's addresses are covered on port 22 and 8080 only.
	cfg := "socks_user = \"bob\"\nsocks_password_file = \"socks.pass\"\n" +
		entry("srv.test", 22) + host22 + entry("srv.test", 8080) + entry("srv6.test", 22) + host22 + entry("srv6.test", 8080) +
		entry(w.cl.A4, 22) + host22 + entry(w.cl.A4, 8080) + entry(strings.ToUpper(w.cl.A6), 22) + host22 + entry(w.cl.A6, 8080)
	w.clientCf = w.path("client.toml")
	os.WriteFile(w.clientCf, []byte(cfg), 0o600)
	w.sockPath = filepath.Join(w.dir, "run", "seqknock", "socks.sock")
	os.MkdirAll(filepath.Dir(filepath.Dir(w.sockPath)), 0o755)
	// A mount namespace of its own, where /etc/hosts is the test's file:
	// nothing is written outside the test's directory.
	w.socks = exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$0" /etc/hosts && exec ip netns exec "$1" "$2" socks --config "$3" --socket "$4" --syn-timeout 1s --handshake-timeout 2s`,
		w.path("hosts"), w.cli.Name, w.seqknock, w.clientCf, w.sockPath)
	w.socks.Env = append(os.Environ(), "XDG_STATE_HOME="+w.path("state"))
	w.socks.Stderr = w.log
	if err := w.socks.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.socks.Process.Kill()
		w.socks.Wait()
		if t.Failed() {
			t.Logf("seqknock socks log:\n%s", w.log)
		}
	})
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(w.log.String(), "serving uid 0") {
		if time.Now().After(deadline) || w.socks.ProcessState != nil {
			t.Fatalf("seqknock socks did not start:\n%s", w.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return w
}

// logLines waits a moment for n lines matching re in the proxy's log.
func (w *socksWorld) logLines(t *testing.T, re string, n int) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(5 * time.Second)
	for len(rx.FindAllString(w.log.String(), -1)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("proxy log has fewer than %d lines matching %q:\n%s", n, re, w.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// run runs a client program in the client namespace, as root or as u.
func (w *socksWorld) run(u *netnstest.User, name string, args ...string) (string, error) {
	var cmd *exec.Cmd
	if u != nil {
		cmd = u.Command(w.cli, name, args...)
	} else {
		cmd = w.cli.Command(name, args...)
	}
	cmd.WaitDelay = time.Second
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(40 * time.Second):
			cmd.Process.Kill()
		}
	}()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestSocksClients: real clients through `seqknock socks` to services
// that only a knock opens: OpenSSH through nc -X 5 and nc -X connect,
// curl through SOCKS5 (names and addresses) and HTTP CONNECT, over IPv4
// and IPv6, and a SOCKS5 client on the Unix socket.
func TestSocksClients(t *testing.T) {
	t.Parallel()
	w := newSocksWorld(t, 214)
	// Without a knock, both services look filtered.
	for _, port := range []string{"22", "8080"} {
		out, err := w.run(nil, "curl", "-sS", "--max-time", "2", "telnet://"+w.cl.A4+":"+port)
		if err == nil || !strings.Contains(out, "(28)") {
			t.Fatalf("port %s without a knock: %v: %s; want a time-out", port, err, out)
		}
	}
	ssh := []struct {
		name, proxy, host string
	}{
		{"nc -X 5, name", "nc -X 5 -x 127.0.0.1:1080 %h %p", "srv.test"},
		{"nc -X 5, IPv6 name", "nc -X 5 -x 127.0.0.1:1080 %h %p", "srv6.test"},
		{"nc -X 5, IPv4 address", "nc -X 5 -x 127.0.0.1:1080 %h %p", w.cl.A4},
		{"nc -X connect, name", "nc -X connect -x 127.0.0.1:1080 %h %p", "srv.test"},
		{"nc -X connect, IPv6 address", "nc -X connect -x 127.0.0.1:1080 %h %p", w.cl.A6},
	}
	for _, tc := range ssh {
		t.Run("ssh "+tc.name, func(t *testing.T) {
			out, err := w.sshRun(tc.proxy, false, tc.host, "echo", "through-socks")
			if err != nil || strings.TrimSpace(out) != "through-socks" {
				t.Fatalf("ssh: %v: %s", err, out)
			}
		})
	}
	for _, tc := range []struct{ name, flag, proxy, url string }{
		{"socks5-hostname", "--socks5-hostname", "127.0.0.1:1080", "http://srv.test:8080/hello.txt"},
		{"socks5-hostname IPv6", "--socks5-hostname", "127.0.0.1:1080", "http://srv6.test:8080/hello.txt"},
		{"socks5 IPv6 address", "--socks5", "127.0.0.1:1080", "http://[" + w.cl.A6 + "]:8080/hello.txt"},
		{"http connect", "--proxy", "http://127.0.0.1:1080", "http://srv.test:8080/hello.txt"},
		{"http connect IPv4 address", "--proxy", "http://127.0.0.1:1080", "http://" + w.cl.A4 + ":8080/hello.txt"},
	} {
		t.Run("curl "+tc.name, func(t *testing.T) {
			out, err := w.run(nil, "curl", "-sS", "--max-time", "20", "--proxytunnel", tc.flag, tc.proxy, tc.url)
			if err != nil || out != "hello through the knock\n" {
				t.Fatalf("curl %s: %v: %s", tc.flag, err, out)
			}
		})
	}
	t.Run("unix socket", func(t *testing.T) {
		c, err := net.Dial("unix", w.sockPath)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "\x05\x01\x00\x05\x01\x00\x03\x08srv.test\x1f\x90")
		fmt.Fprintf(c, "GET /hello.txt HTTP/1.0\r\n\r\n")
		br := bufio.NewReader(c)
		hdr := make([]byte, 12)
		if _, err := io.ReadFull(br, hdr); err != nil || string(hdr[:4]) != "\x05\x00\x05\x00" {
			t.Fatalf("socks5 over the Unix socket: % x %v", hdr, err)
		}
		body, _ := io.ReadAll(br)
		if !strings.Contains(string(body), "hello through the knock") {
			t.Fatalf("reply: %q", body)
		}
		if fi, err := os.Stat(w.sockPath); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("socket mode: %v %v", fi.Mode(), err)
		}
		if fi, err := os.Stat(filepath.Dir(w.sockPath)); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("socket directory mode: %v %v", fi.Mode(), err)
		}
	})
	w.logLines(t, `(?m)^seqknock socks: connected .*"srv6.test" port 22 via \[`+regexp.QuoteMeta(w.cl.A6)+`\]:22$`, 1)
}

// TestSocksHostOptions: the proxy dials as the covering [[host]] says:
// with bind_source_port, and signed with TCP-MD5, each required by the
// server's service (a knock without them is dropped, an unsigned
// connection never answered), over IPv4 and IPv6.
func TestSocksHostOptions(t *testing.T) {
	t.Parallel()
	for i, tc := range []struct{ name, service, host string }{
		{"bind_source_port", "bind_source_port = true\n", "bind_source_port = true\n"},
		{"tcp-md5", "sign = \"tcp-md5\"\nsign_key_file = \"ssh.sign\"\n", "sign = \"tcp-md5\"\nsign_key_file = \"ssh.sign\"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newSocksWorldWith(t, 226+2*i, tc.service, tc.host)
			for _, host := range []string{"srv.test", "srv6.test"} {
				out, err := w.sshRun("nc -X 5 -x 127.0.0.1:1080 %h %p", false, host, "echo", "through-socks")
				if err != nil || strings.TrimSpace(out) != "through-socks" {
					t.Fatalf("ssh to %s: %v: %s", host, err, out)
				}
			}
		})
	}
}

// TestSocksRefusals: what the proxy must refuse, each with the protocol's
// error and one log line: destinations no [[host]] covers (and no packet
// leaves toward them), another local user on the loopback listener and
// the Unix socket, a wrong password, garbage and oversized requests.
func TestSocksRefusals(t *testing.T) {
	t.Parallel()
	w := newSocksWorld(t, 216)
	// Count every packet the client namespace sends toward an uncovered
	// destination (the server, port 8081).
	nft := w.cli.Command("nft", "-f", "-")
	nft.Stdin = strings.NewReader("table inet skwatch {\n chain out {\n  type filter hook output priority 0; policy accept;\n  tcp dport 8081 counter\n  udp dport 53 counter\n }\n}\n")
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	refused := 0
	t.Run("not covered", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"--socks5-hostname", "127.0.0.1:1080", "http://other.test:8081/"}, "(97)"},
			{[]string{"--socks5-hostname", "127.0.0.1:1080", "http://srv.test.evil.test:8081/"}, "(97)"},
			{[]string{"--socks5", "127.0.0.1:1080", "http://" + w.cl.A4 + ":8081/"}, "(97)"},
			{[]string{"--socks5", "127.0.0.1:1080", "http://[" + w.cl.A6 + "]:8081/"}, "(97)"},
			{[]string{"--proxytunnel", "--proxy", "http://127.0.0.1:1080", "http://other.test:8081/"}, "403"},
			{[]string{"--proxytunnel", "--proxy", "http://127.0.0.1:1080", "http://" + w.cl.A4 + ":8081/"}, "403"},
		} {
			out, err := w.run(nil, "curl", append([]string{"-sS", "--max-time", "10"}, tc.args...)...)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("curl %v: %v: %s; want a refusal with %s", tc.args, err, out, tc.want)
			}
			if tc.want == "(97)" && !strings.Contains(out, ". (2)") {
				t.Errorf("curl %v: %s; want SOCKS5 reply 2, connection not allowed", tc.args, out)
			}
			refused++
		}
		w.logLines(t, `(?m)^seqknock socks: refused 127\.0\.0\.1:\d+ uid 0: ".*" port 8081: no \[\[host\]\] covers it$`, 6)
		out := w.cli.MustRun("nft", "list", "table", "inet", "skwatch")
		if !regexp.MustCompile(`tcp dport 8081 counter packets 0 `).MatchString(out) || !regexp.MustCompile(`udp dport 53 counter packets 0 `).MatchString(out) {
			t.Errorf("packets left toward an uncovered destination:\n%s", out)
		}
	})

	u := netnstest.NewUser(t)
	t.Run("another user", func(t *testing.T) {
		out, err := w.run(u, "curl", "-sS", "--max-time", "10", "--socks5-hostname", "127.0.0.1:1080", "http://srv.test:8080/hello.txt")
		if err == nil || strings.Contains(out, "hello") {
			t.Errorf("socks5 as uid %d: %v: %s", u.UID, err, out)
		}
		w.logLines(t, fmt.Sprintf(`(?m)^seqknock socks: refused 127\.0\.0\.1:\d+ uid %d: not the proxy's user, and no username/password offered$`, u.UID), 1)
		out, err = w.run(u, "curl", "-sS", "--max-time", "10", "--proxytunnel", "--proxy", "http://127.0.0.1:1080", "http://srv.test:8080/hello.txt")
		if err == nil || !strings.Contains(out, "407") {
			t.Errorf("http connect as uid %d: %v: %s", u.UID, err, out)
		}
		w.logLines(t, fmt.Sprintf(`(?m)^seqknock socks: refused 127\.0\.0\.1:\d+ uid %d: not the proxy's user, and no Proxy-Authorization given$`, u.UID), 1)
		out, err = w.sshRunAs(u, "nc -X 5 -x 127.0.0.1:1080 %h %p")
		if err == nil || strings.Contains(out, "through-socks") {
			t.Errorf("ssh through nc -X 5 as uid %d: %v: %s", u.UID, err, out)
		}
		w.logLines(t, fmt.Sprintf(`(?m)^seqknock socks: refused 127\.0\.0\.1:\d+ uid %d: `, u.UID), 3)
		// The Unix socket's directory is closed to the user.
		out, err = w.run(u, "nc", "-U", "-N", w.sockPath)
		if err == nil || !strings.Contains(out, "ermission denied") {
			t.Errorf("nc -U as uid %d: %v: %s", u.UID, err, out)
		}
	})
	t.Run("password", func(t *testing.T) {
		out, err := w.run(u, "curl", "-sS", "--max-time", "10", "--socks5-hostname", "127.0.0.1:1080", "--proxy-user", "bob:wrong-password", "http://srv.test:8080/hello.txt")
		if err == nil || strings.Contains(out, "hello") {
			t.Errorf("wrong password: %v: %s", err, out)
		}
		w.logLines(t, fmt.Sprintf(`(?m)^seqknock socks: refused 127\.0\.0\.1:\d+ uid %d: wrong socks5 username or password \(user "bob"\)$`, u.UID), 1)
		if strings.Contains(w.log.String(), "wrong-password") || strings.Contains(w.log.String(), "right-password") {
			t.Errorf("a password is in the log:\n%s", w.log)
		}
		out, err = w.run(u, "curl", "-sS", "--max-time", "20", "--socks5-hostname", "127.0.0.1:1080", "--proxy-user", "bob:right-password", "http://srv.test:8080/hello.txt")
		if err != nil || out != "hello through the knock\n" {
			t.Errorf("right password: %v: %s", err, out)
		}
	})
	t.Run("garbage and oversized", func(t *testing.T) {
		for _, tc := range []struct {
			name, in, want, log string
		}{
			{"tls hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", "HTTP/1.1 400 ", `neither SOCKS5 nor HTTP: first byte 0x16`},
			{"binary after a letter", "GE\x00T / HTTP/1.1\r\n\r\n", "HTTP/1.1 400 ", `http request: control byte 0x00`},
			{"oversized", "CONNECT srv.test:22 HTTP/1.1\r\nX-Pad: " + strings.Repeat("a", 20000) + "\r\n\r\n", "HTTP/1.1 431 ", `http request: header over 8192 bytes`},
			{"socks4", "\x04\x01\x00\x16\xc6\x12\x00\x01\x00", "\x00\x5b", `socks4 is not served`},
			{"socks5 bind", "\x05\x01\x00\x05\x02\x00\x03\x08srv.test\x00\x16", "\x05\x00\x05\x07", `only CONNECT \(1\) is served`},
			{"socks5 cut", "\x05\x01\x00\x05\x01\x00\x03\x08srv", "\x05\x00\x05\x01", `socks5 request: .*timeout`},
			{"http cut", "CONNECT srv.test:22 HTTP/1.1\r\n", "HTTP/1.1 408 ", `http request: .*timeout`},
		} {
			var got []byte
			err := w.cli.Do(func() error {
				c, err := net.Dial("tcp", "127.0.0.1:1080")
				if err != nil {
					return err
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(8 * time.Second))
				io.WriteString(c, tc.in)
				got, err = io.ReadAll(c)
				return err
			})
			if err != nil || !strings.HasPrefix(string(got), tc.want) {
				t.Errorf("%s: %q %v, want %q then a close", tc.name, got, err, tc.want)
			}
			w.logLines(t, `(?m)^seqknock socks: refused 127\.0\.0\.1:\d+ uid 0: .*`+tc.log, 1)
		}
	})
	if t.Failed() {
		return
	}
	// Every refusal above is one line; the owner's own requests were
	// all refused but for none.
	if n := strings.Count(w.log.String(), "connected "); n != 1 {
		t.Errorf("%d connections logged, want 1 (the right password):\n%s", n, w.log)
	}
}

// sshRunAs runs ssh as u in the client namespace through proxy to
// srv.test, with u's own known hosts file.
func (w *socksWorld) sshRunAs(u *netnstest.User, proxy string) (string, error) {
	args := []string{"-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=8", "-o", "ProxyCommand=" + proxy,
		"root@srv.test", "echo", "through-socks"}
	return w.run(u, "ssh", args...)
}

// TestSocksUnprivileged: `seqknock socks` run by a real unprivileged
// user, with a setcap copy of the binary and with the broker: the user's
// curl gets through to the knocked service by address, IPv4 and IPv6;
// root's own curl on that user's listener is refused (not its owner);
// with the broker the proxy holds no capability.
func TestSocksUnprivileged(t *testing.T) {
	t.Parallel()
	w := newSocksWorld(t, 218)
	netnstest.RequireRoot(t, "setcap", "groupadd")
	dir, err := os.MkdirTemp("", "seqknock-socks-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	src, _ := os.ReadFile(w.seqknock)
	capBin := filepath.Join(dir, "seqknock")
	os.WriteFile(capBin, src, 0o755)
	if out, err := exec.Command("setcap", "cap_net_admin+ep", capBin).CombinedOutput(); err != nil {
		t.Fatalf("setcap: %v: %s", err, out)
	}
	g := netnstest.NewGroup(t)
	sock := filepath.Join(dir, "run", "broker.sock")
	startBroker(t, w.seqknock, sock, g.Name)
	// Every user here knocks with alice's key, each with a slot file of
	// its own: a knock another already spent is dropped, so the proxy
	// sends up to 4 (--attempts), each after --syn-timeout.
	key, _ := os.ReadFile(w.path("alice.key"))
	for i, mode := range []struct{ name, bin string }{{"setcap", capBin}, {"broker", w.seqknock}} {
		t.Run(mode.name, func(t *testing.T) {
			u := netnstest.NewUser(t)
			if mode.name == "broker" {
				u.Join(g)
			}
			u.WriteFile(".config/seqknock/alice.key", key, 0o600)
			entry := "[[host]]\nmatch = %q\nport = 8080\nkey_file = \"alice.key\"\nrealm = \"lab\"\nperiod = \"10s\"\nslots = 64\n"
			u.WriteFile(".config/seqknock/client.toml", []byte(fmt.Sprintf("broker = %q\n"+entry+entry, sock, w.cl.A4, w.cl.A6)), 0o600)
			listen := "127.0.0.1:" + strconv.Itoa(1081+i)
			cmd := u.Command(w.cli, mode.bin, "socks", "--listen", listen, "--socket", "none", "--syn-timeout", "1s", "--attempts", "4")
			cmd.Env = append(cmd.Env, "XDG_STATE_HOME="+filepath.Join(u.Home, ".state"))
			log := &netnstest.Buffer{}
			cmd.Stderr = log
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log.String(), fmt.Sprintf("serving uid %d", u.UID)); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("seqknock socks as %s did not start: %s", u.Name, log)
				}
			}
			for _, target := range []string{w.cl.A4, "[" + w.cl.A6 + "]"} {
				out, err := w.run(u, "curl", "-sS", "--max-time", "20", "--socks5", listen, "http://"+target+":8080/hello.txt")
				if err != nil || out != "hello through the knock\n" {
					t.Fatalf("curl as %s to %s: %v: %s\nproxy log:\n%s", u.Name, target, err, out, log)
				}
			}
			status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
			capEff := regexp.MustCompile(`CapEff:\s+(\S+)`).FindStringSubmatch(string(status))
			want := map[string]string{"setcap": "0000000000001000", "broker": "0000000000000000"}[mode.name]
			if capEff == nil || capEff[1] != want {
				t.Errorf("proxy's CapEff %v, want %s", capEff, want)
			}
			out, err := w.run(nil, "curl", "-sS", "--max-time", "10", "--socks5", listen, "http://"+w.cl.A4+":8080/hello.txt")
			if err == nil || strings.Contains(out, "hello") {
				t.Errorf("root's curl on %s's proxy: %v: %s", u.Name, err, out)
			}
			for deadline := time.Now().Add(5 * time.Second); !regexp.MustCompile(`(?m)^seqknock socks: refused 127\.0\.0\.1:\d+ uid 0: not the proxy's user`).MatchString(log.String()); time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("no refusal of uid 0 in the log:\n%s", log)
				}
			}
		})
	}
}
