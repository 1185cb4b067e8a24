package tomlerr

import (
	"errors"
	"os"
	"testing"
)

const text = `top = 1 # line 1

[[svc]]
port = 22
[[svc]]  # a comment
"port" = 23
name = "x"

[single]
port = 9
`

func TestLine(t *testing.T) {
	d := New("f.toml", []byte(text))
	for _, tc := range []struct {
		section string
		idx     int
		key     string
		want    int
	}{
		{"", 0, "top", 1},
		{"", 0, "port", 0}, // not at top level
		{"svc", 0, "port", 4},
		{"svc", 1, "port", 6}, // quoted key
		{"svc", 1, "", 5},     // the header
		{"svc", 1, "nope", 5}, // key not found: the header
		{"svc", -1, "name", 7},
		{"svc", 2, "port", 0}, // no such entry
		{"single", -1, "port", 10},
		{"other", 0, "x", 0},
	} {
		if got := d.Line(tc.section, tc.idx, tc.key); got != tc.want {
			t.Errorf("Line(%q, %d, %q) = %d, want %d", tc.section, tc.idx, tc.key, got, tc.want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	type svc struct {
		Port int `toml:"port"`
	}
	type cfg struct {
		Top int   `toml:"top"`
		Svc []svc `toml:"svc"`
	}
	for _, tc := range []struct{ name, text, want string }{
		{"syntax", "top = 1\n[[svc]\n", "config f.toml:3: expected end of table array name delimiter ']', but got '\\n' instead"},
		{"type", "top = \"one\"\n", "config f.toml:1: top: incompatible types: TOML value has type string; destination has type integer"},
		{"unknown key", "top = 1\n[[svc]]\nport = 1\nprot = 2\n", "config f.toml:4: svc.prot: unknown key"},
		{"unknown top key", "top = 1\ntpo = 2\n", "config f.toml:2: tpo: unknown key"},
		// Found by FuzzParseConfig: the decoder quotes a line break.
		{"line break in message", "[[svc]]\nport=0b\n0\n", `config f.toml:2: not a binary number: '0b\n'`},
	} {
		var c cfg
		err := New("f.toml", []byte(tc.text)).Decode(&c)
		var e *Error
		if !errors.As(err, &e) || err.Error() != tc.want {
			t.Errorf("%s: %v (%T), want %q", tc.name, err, err, tc.want)
		}
	}
	var c cfg
	if err := New("f.toml", []byte("top = 1\n[[svc]]\nport = 2\n")).Decode(&c); err != nil || c.Top != 1 || c.Svc[0].Port != 2 {
		t.Errorf("good text: %+v %v", c, err)
	}
}

func TestErrorText(t *testing.T) {
	d := New("f.toml", []byte(text))
	if got := d.At("svc", 1, "port", "svc[1].port", errors.New("bad")).Error(); got != "config f.toml:6: svc[1].port: bad" {
		t.Errorf("At: %q", got)
	}
	e := &Error{File: "f.toml", Err: os.ErrNotExist}
	if e.Error() != "config f.toml: file does not exist" || !errors.Is(e, os.ErrNotExist) {
		t.Errorf("no line, no field: %q", e.Error())
	}
}

// TestDecodeLeavesLinesUnsplit holds New and a Decode that finds no
// mistake to the text as given: it is split into lines (several times the
// text's size in the heap, at 50,000 users) only when a line is asked for.
func TestDecodeLeavesLinesUnsplit(t *testing.T) {
	d := New("f.toml", []byte(text))
	var v struct {
		Top int `toml:"top"`
		Svc []struct {
			Port int    `toml:"port"`
			Name string `toml:"name"`
		} `toml:"svc"`
		Single struct {
			Port int `toml:"port"`
		} `toml:"single"`
	}
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	if d.lines != nil || d.spans != nil {
		t.Fatalf("after New and Decode: %d lines and %d sections held, want none until a line is asked for", len(d.lines), len(d.spans))
	}
	if got := d.Line("svc", 1, "port"); got != 6 {
		t.Fatalf("Line after Decode = %d, want 6", got)
	}
}
