package main

import (
	"strings"
	"testing"
)

// TestSummary: a failing test's output is shown, a passing one's is not, a
// skip is listed with its reason, and a failure is remembered.
func TestSummary(t *testing.T) {
	in := `{"Action":"start","Package":"p"}
{"Action":"run","Package":"p","Test":"TestOK"}
{"Action":"output","Package":"p","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"output","Package":"p","Test":"TestOK","Output":"    ok_test.go:3: chatter\n"}
{"Action":"output","Package":"p","Test":"TestOK","Output":"--- PASS: TestOK (0.00s)\n"}
{"Action":"pass","Package":"p","Test":"TestOK"}
{"Action":"output","Package":"p","Test":"TestSkip","Output":"    x_test.go:9: needs root\n"}
{"Action":"output","Package":"p","Test":"TestSkip","Output":"--- SKIP: TestSkip (0.00s)\n"}
{"Action":"skip","Package":"p","Test":"TestSkip"}
{"Action":"output","Package":"p","Test":"TestBad/sub","Output":"    bad_test.go:7: want 1, got 2\n"}
{"Action":"output","Package":"p","Test":"TestBad/sub","Output":"    --- FAIL: TestBad/sub (0.00s)\n"}
{"Action":"fail","Package":"p","Test":"TestBad/sub"}
{"Action":"output","Package":"p","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}
{"Action":"fail","Package":"p","Test":"TestBad"}
{"Action":"output","Package":"p","Output":"FAIL\tp\t0.01s\n"}
{"Action":"fail","Package":"p"}
not json
`
	var out strings.Builder
	s, err := run(strings.NewReader(in), &out)
	if err != nil {
		t.Fatal(err)
	}
	want := "    bad_test.go:7: want 1, got 2\n    --- FAIL: TestBad/sub (0.00s)\n--- FAIL: TestBad (0.00s)\nFAIL\tp\t0.01s\nnot json\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
	if !s.failed {
		t.Error("a failed test, not remembered")
	}
	if len(s.skips) != 1 || s.skips[0] != "p TestSkip: x_test.go:9: needs root" {
		t.Errorf("skips: %q", s.skips)
	}

	s, _ = run(strings.NewReader(`{"Action":"pass","Package":"p","Test":"TestOK"}`+"\n"+`{"Action":"output","Package":"p","Output":"ok  \tp\t0.01s\n"}`+"\n"), &out)
	if s.failed || len(s.skips) != 0 {
		t.Errorf("all passed: failed %v, skips %q", s.failed, s.skips)
	}
	out.Reset()
	s, _ = run(strings.NewReader(`{"ImportPath":"p","Action":"build-output","Output":"x.go:1: syntax error\n"}`+"\n"+`{"ImportPath":"p","Action":"build-fail"}`+"\n"), &out)
	if !s.failed || out.String() != "x.go:1: syntax error\n" {
		t.Errorf("build failure: failed %v, printed %q", s.failed, out.String())
	}
}
