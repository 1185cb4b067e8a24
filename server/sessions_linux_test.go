//go:build linux

package server

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/client"
	"golang.org/x/sys/unix"
)

// sendRawTCP sends one IPv4 TCP segment from the attacker to the server's
// port 22 with the given flags, sequence and payload, from a source port no
// connection uses.
func (s *synSender) sendTCP(t testing.TB, flags byte, seq, ack uint32, payload []byte) {
	t.Helper()
	s.sport++
	p := make([]byte, 40+len(payload))
	p[0], p[8], p[9] = 0x45, 64, unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	src, dst := s.src.As4(), s.dst.As4()
	copy(p[12:16], src[:])
	copy(p[16:20], dst[:])
	binary.BigEndian.PutUint16(p[10:12], csum(p[:20]))
	tcp := p[20:]
	binary.BigEndian.PutUint16(tcp[0:2], s.sport)
	binary.BigEndian.PutUint16(tcp[2:4], 22)
	binary.BigEndian.PutUint32(tcp[4:8], seq)
	binary.BigEndian.PutUint32(tcp[8:12], ack)
	tcp[12], tcp[13] = 5<<4, flags
	binary.BigEndian.PutUint16(tcp[14:16], 64240)
	copy(tcp[20:], payload)
	pseudo := append(append(append([]byte{}, src[:]...), dst[:]...), 0, unix.IPPROTO_TCP, 0, 0)
	binary.BigEndian.PutUint16(pseudo[10:12], uint16(len(tcp)))
	binary.BigEndian.PutUint16(tcp[16:18], csum(append(pseudo, tcp...)))
	if err := unix.Sendto(s.fd, p, 0, &unix.SockaddrInet4{Addr: dst}); err != nil {
		t.Fatal(err)
	}
}

// answersTo counts the packets the server sent from port 22 to addr, in
// the test's own table.
func answersTo(t testing.TB, b *testbed, addr string) int {
	t.Helper()
	out := b.srv.MustRun("nft", "list", "chain", "inet", "obs", "out")
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "daddr "+addr+" ") {
			if m := rePackets.FindStringSubmatch(line); m != nil {
				n, _ := strconv.Atoi(m[1])
				return n
			}
		}
	}
	t.Fatalf("no counter for %s:\n%s", addr, out)
	return 0
}

// knockedSession knocks from the client with slot 0 and returns both ends
// of the connection; they are closed when the test ends.
func (f *inForce) knockedSession(t testing.TB) (conn, srv net.Conn) {
	t.Helper()
	d := client.Dialer{Key: aliceKey, Realm: "lab", Resolve: literal, Reserve: fixedSlot(0), Slots: 1, SynTimeout: time.Second}
	if err := f.cli.Do(func() (err error) { conn, err = d.Dial(context.Background(), f.cl.A4, 22); return }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	srv = <-f.accepted
	t.Cleanup(func() { srv.Close() })
	return conn, srv
}

// observeAnswers counts, in a table of the test's own, what the server
// sends from port 22 to the attacker (answersTo reads it).
func (f *inForce) observeAnswers() {
	f.srv.MustRun("nft", "add table inet obs; add chain inet obs out { type filter hook output priority 0; }; "+
		"add rule inet obs out ip daddr "+f.al.B4+" tcp sport 22 counter")
}

// TestMidStreamOnlyForRealSessions: a raw ACK, FIN and ACK with data from
// a flow that never existed get no answer at all (before, they passed the
// table and the kernel answered each with a reset); a knocked session
// survives `conntrack -F` (its next packets are picked up mid-stream and
// belong to a real socket), and so does one opened before the table.
func TestMidStreamOnlyForRealSessions(t *testing.T) {
	f := newInForce(t, 78, fmt.Sprintf(tbConfig, "30s", 1))
	// A session from before the table: stop the daemon, remove the table,
	// flush conntrack, open the session, start the daemon again.
	f.stop()
	f.srv.MustRun("nft", "delete", "table", "inet", "seqknock")
	var before net.Conn
	if err := f.cli.Do(func() (err error) { before, err = net.Dial("tcp", net.JoinHostPort(f.cl.A4, "22")); return }); err != nil {
		t.Fatal(err)
	}
	defer before.Close()
	beforeSrv := <-f.accepted
	defer beforeSrv.Close()
	f.srv.MustRun("conntrack", "-F")
	f.start(t, daemonOpts{})
	f.observeAnswers()

	// A knocked session, opened after the table (so the install did not
	// see it).
	conn, srv := f.knockedSession(t)
	pingBoth(t, before, beforeSrv, "opened before the table, after the first sync")
	pingBoth(t, conn, srv, "knocked")
	for i := 0; i < 2; i++ {
		f.srv.MustRun("conntrack", "-F")
		pingBoth(t, before, beforeSrv, fmt.Sprintf("opened before the table, after conntrack -F %d", i))
		pingBoth(t, conn, srv, fmt.Sprintf("knocked, after conntrack -F %d", i))
	}

	// Stray segments of flows that never existed.
	s := newSynSender(t, f.testbed)
	for _, tc := range []struct {
		name    string
		flags   byte
		payload []byte
	}{
		{"ACK", 0x10, nil},
		{"FIN", 0x01, nil},
		{"FIN+ACK", 0x11, nil},
		{"ACK with data", 0x18, []byte("GET / HTTP/1.0\r\n\r\n")},
	} {
		n := answersTo(t, f.testbed, f.al.B4)
		for i := 0; i < 50; i++ {
			s.sendTCP(t, tc.flags, uint32(1000+i), uint32(5000+i), tc.payload)
		}
		time.Sleep(300 * time.Millisecond)
		if got := answersTo(t, f.testbed, f.al.B4) - n; got != 0 {
			t.Errorf("%s from a flow that never existed: %d answers from port 22", tc.name, got)
		}
	}
}

// TestMidStreamResetMode: with port 22 in reset mode, a knocked session
// opened after the last sync survives `conntrack -F`: its next packets are
// picked up mid-stream, and its 4-tuple is in the sessions sets from the
// moment the daemon learned of the admission (the admit rule's nflog),
// not only from the next sync; otherwise they would be answered with the
// reset meant for scanners, which ends the session. A stray ACK from a
// flow that never existed still gets that reset.
func TestMidStreamResetMode(t *testing.T) {
	f := newInForce(t, 172, strings.Replace(fmt.Sprintf(tbConfig, "30s", 1), "port = 22\n", "port = 22\nunknocked = \"reset\"\n", 1))
	f.observeAnswers()
	conn, srv := f.knockedSession(t)
	pingBoth(t, conn, srv, "knocked")
	time.Sleep(200 * time.Millisecond) // the daemon reads the admission
	for i := 0; i < 2; i++ {
		f.srv.MustRun("conntrack", "-F")
		pingBoth(t, conn, srv, fmt.Sprintf("knocked, reset mode, after conntrack -F %d", i))
	}
	s := newSynSender(t, f.testbed)
	n := answersTo(t, f.testbed, f.al.B4)
	s.sendTCP(t, 0x10, 1000, 5000, nil)
	time.Sleep(300 * time.Millisecond)
	if got := answersTo(t, f.testbed, f.al.B4) - n; got != 1 {
		t.Errorf("a stray ACK in reset mode: %d answers, want the 1 reset", got)
	}
}
