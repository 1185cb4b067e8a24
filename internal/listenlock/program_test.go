package listenlock

import (
	"encoding/binary"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current code")

// TestProgramGolden compares the program for bit 24, byte for byte as the
// kernel reads it, with testdata/program.golden (one instruction a line:
// its 8 bytes in hex, then what it does). Run with -update to accept a
// change.
func TestProgramGolden(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the golden file holds the little-endian layout")
	}
	prog, err := Program(1 << 24)
	if err != nil {
		t.Fatal(err)
	}
	what := []string{
		"ld [SKF_AD_OFF + SKF_AD_MARK]",
		"jset #0x01000000 -> accept",
		"ldb [13]",
		"jset #0x10 (ACK) -> accept",
		"jset #0x02 (SYN) -> drop",
		"accept: ret #0xffffffff",
		"drop: ret #0",
	}
	raw := Marshal(prog)
	if len(raw) != 8*len(what) {
		t.Fatalf("%d bytes, want %d", len(raw), 8*len(what))
	}
	var b strings.Builder
	for i := range what {
		b.WriteString(hex.EncodeToString(raw[8*i:8*i+8]) + "  " + what[i] + "\n")
	}
	golden := filepath.Join("testdata", "program.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if b.String() != string(want) {
		t.Errorf("program differs from %s; if intended, run with -update:\ngot:\n%swant:\n%s", golden, b.String(), want)
	}
}

// TestProgram runs the program on the packets a listener sees, with a
// small classic BPF interpreter of the four instructions it uses, for
// each bit: only a SYN without ACK and without the bit is dropped.
func TestProgram(t *testing.T) {
	for _, n := range []uint{0, 8, 24, 31} {
		bit := uint32(1) << n
		prog, err := Program(bit)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			flags byte
			mark  uint32
			keep  bool
		}{
			{flagSYN, 0, false},
			{flagSYN, ^bit, false}, // every other bit
			{flagSYN, bit, true},
			{flagSYN | 0x01, 0, false}, // SYN+FIN
			{flagSYN | flagACK, 0, true},
			{flagACK, 0, true},
			{0x04, 0, true}, // RST
			{0x01, 0, true}, // FIN
			{0x18, 0, true}, // PSH+ACK
		} {
			seg := make([]byte, 20)
			seg[tcpFlags] = c.flags
			if got := run(t, prog, seg, c.mark) != 0; got != c.keep {
				t.Errorf("bit %#x flags %#02x mark %#x: kept %v, want %v", bit, c.flags, c.mark, got, c.keep)
			}
		}
	}
	for _, bad := range []uint32{0, 3, 0xffffffff} {
		if _, err := Program(bad); err == nil {
			t.Errorf("Program(%#x): no error", bad)
		}
	}
}

// run interprets the classic BPF instructions Program uses.
func run(t *testing.T, prog []unix.SockFilter, seg []byte, mark uint32) uint32 {
	var a uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			if in.K != skfAdMark {
				t.Fatalf("pc %d: load word %#x", pc, in.K)
			}
			a = mark
		case unix.BPF_LD | unix.BPF_B | unix.BPF_ABS:
			a = uint32(seg[in.K])
		case unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			if a&in.K != 0 {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("pc %d: code %#x", pc, in.Code)
		}
	}
	t.Fatal("fell off the end")
	return 0
}

func TestOwnBit(t *testing.T) {
	p, _ := Program(1 << 7)
	if bit, ok := OwnBit(p); !ok || bit != 1<<7 {
		t.Errorf("OwnBit(own program) = %#x, %v", bit, ok)
	}
	p[5].K = 0x40000
	if _, ok := OwnBit(p); ok {
		t.Error("a changed program is taken for ours")
	}
}

// Marshal returns prog as the kernel reads it: each instruction's struct
// sock_filter (code, jt, jf, k) in the host's byte order.
func Marshal(prog []unix.SockFilter) []byte {
	out := make([]byte, 0, 8*len(prog))
	for _, in := range prog {
		out = binary.NativeEndian.AppendUint16(out, in.Code)
		out = append(out, in.Jt, in.Jf)
		out = binary.NativeEndian.AppendUint32(out, in.K)
	}
	return out
}
