//go:build linux

package listenlock

import (
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/seqknock/seqknock/internal/netnstest"
	"golang.org/x/sys/unix"
)

// TestReviewDualStackListener: a dual-stack listener on [::] (IPv4
// arrives v4-mapped) is locked for IPv4 SYNs as well: a plain IPv4
// connect times out, a marked one gets the greeting.
func TestReviewDualStackListener(t *testing.T) {
	netnstest.RequireRoot(t, "nft")
	ns := netnstest.New(t, "lld")
	ln := listen(t, ns, "[::]:2226") // Go listens dual-stack on [::]
	fd := sockFD(t, ln)
	if changed, err := Attach(fd, testBit); !changed || err != nil {
		t.Fatalf("Attach = %v, %v", changed, err)
	}
	nft := ns.Command("nft", "-f", "-")
	nft.Stdin = strings.NewReader(markRule)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v: %s", err, out)
	}
	if r := dial(t, ns, "127.0.0.1:2226", 0); r.err == nil {
		r.conn.Close()
		t.Errorf("a plain IPv4 connect to a locked dual-stack listener got in")
	} else if !isTimeout(r.err) {
		t.Errorf("plain IPv4 connect: %v; want a timeout", r.err)
	}
	r := dial(t, ns, "127.0.0.1:2226", knockPort)
	if r.err != nil {
		t.Fatalf("marked IPv4 connect: %v", r.err)
	}
	r.conn.Close()
	if r.greeting != "hello\n" {
		t.Errorf("marked IPv4 connect read %q", r.greeting)
	}
}

// loadAcceptAll loads an eBPF socket filter that passes every packet
// whole (r0 = 0xffff; exit) and returns its descriptor.
func loadAcceptAll(t *testing.T) int {
	t.Helper()
	// struct bpf_insn: code u8, dst:4 src:4 u8, off s16, imm s32.
	insns := []uint64{
		0x000000b7 | 0xffff<<32, // BPF_ALU64|BPF_MOV|BPF_K r0 = 0xffff
		0x00000095,              // BPF_JMP|BPF_EXIT
	}
	license := []byte("GPL\x00")
	// union bpf_attr for BPF_PROG_LOAD: prog_type u32, insn_cnt u32,
	// insns u64, license u64, then zeros.
	var attr [128]byte
	binary.LittleEndian.PutUint32(attr[0:], unix.BPF_PROG_TYPE_SOCKET_FILTER)
	binary.LittleEndian.PutUint32(attr[4:], uint32(len(insns)))
	binary.LittleEndian.PutUint64(attr[8:], uint64(uintptr(unsafe.Pointer(&insns[0]))))
	binary.LittleEndian.PutUint64(attr[16:], uint64(uintptr(unsafe.Pointer(&license[0]))))
	fd, _, e := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	if e != 0 {
		t.Skipf("BPF_PROG_LOAD: %v", e)
	}
	t.Cleanup(func() { unix.Close(int(fd)) })
	return int(fd)
}

// TestReviewServiceEBPFFilterLeftAlone: a service's own eBPF socket
// filter (SO_ATTACH_BPF) is someone else's filter too and must be left
// alone, as a classic one is: Check says Foreign and Attach refuses with
// ErrForeign. (The kernel answers SO_GET_FILTER with EACCES for an eBPF
// filter; the filter is left alone either way, but status's reason is
// then "getsockopt SO_GET_FILTER: permission denied".)
func TestReviewServiceEBPFFilterLeftAlone(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "lle")
	ln := listen(t, ns, "127.0.0.1:2227")
	fd := sockFD(t, ln)
	prog := loadAcceptAll(t)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ATTACH_BPF, prog); err != nil {
		t.Fatalf("SO_ATTACH_BPF: %v", err)
	}
	st, err := Check(fd, testBit)
	t.Logf("Check of a listener with an eBPF filter: %v, %v", st, err)
	if st != Foreign {
		t.Errorf("Check of a listener with the service's eBPF filter = %v, %v; want %v", st, err, Foreign)
	}
	if got, err := Filter(fd); err == nil && got == nil {
		t.Fatal("SO_GET_FILTER sees no filter: the eBPF filter is not attached")
	}
	if changed, err := Attach(fd, testBit); changed || !errors.Is(err, ErrForeign) {
		t.Errorf("Attach over the service's eBPF filter = %v, %v; want it left alone (%v)", changed, err, ErrForeign)
	}
}
