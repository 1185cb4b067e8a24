package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"
)

// appProxyFlags are the flags of proxy as run builds it for urfave/cli
// (cliconv.Prepare adds the app's own flags to every command).
func appProxyFlags() []cli.Flag {
	return newAppFor("proxy", nil, io.Discard, io.Discard).Commands[0].Flags
}

// TestFastProxyFlagsMatch: the fast path knows exactly proxy's flags, by
// every name, with urfave/cli's kind and default.
func TestFastProxyFlagsMatch(t *testing.T) {
	want := map[string]string{}
	for _, f := range appProxyFlags() {
		var kind fastKind
		var def any
		switch f := f.(type) {
		case *cli.StringFlag:
			kind, def = fastString, f.Value
		case *cli.BoolFlag:
			kind, def = fastBool, f.Value
		case *cli.IntFlag:
			kind, def = fastInt, f.Value
		case *cli.DurationFlag:
			kind, def = fastDuration, f.Value
		default:
			t.Fatalf("proxy's flag %v is a %T, which the fast path cannot parse", f.Names(), f)
		}
		if len(f.(cli.DocGenerationFlag).GetEnvVars()) > 0 {
			t.Errorf("proxy's flag %v reads the environment, which the fast path does not", f.Names())
		}
		for _, n := range f.Names() {
			want[n] = fmt.Sprintf("%s kind %d default %#v", f.Names(), kind, def)
		}
	}
	got := map[string]string{}
	for _, f := range proxyFastFlags {
		for _, n := range f.names {
			got[n] = fmt.Sprintf("%s kind %d default %#v", f.names, f.kind, f.def)
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("proxyFastFlags differ from proxyCommand's flags (-urfave +fast):\n%s", d)
	}
}

// snapshot is every value of proxy's flags, by every name, and the
// operands, as the command's action would read them.
func snapshot(v flagValues, host string, port uint16) []string {
	s := []string{fmt.Sprintf("host %q port %d", host, port)}
	for _, f := range appProxyFlags() {
		for _, n := range f.Names() {
			var val any
			switch f.(type) {
			case *cli.StringFlag:
				val = v.String(n)
			case *cli.BoolFlag:
				val = v.Bool(n)
			case *cli.IntFlag:
				val = v.Int(n)
			case *cli.DurationFlag:
				val = v.Duration(n)
			}
			s = append(s, fmt.Sprintf("%s set=%v %v", n, v.IsSet(n), val))
		}
	}
	return s
}

// urfaveProxy parses args (those after "proxy") through the urfave/cli
// app: the snapshot its action sees, or ok false when the action would not
// run or would refuse the operands.
func urfaveProxy(t *testing.T, args []string) (snap []string, ok bool) {
	app := newAppFor("proxy", nil, io.Discard, io.Discard)
	app.Commands[0].Action = func(c *cli.Context) error {
		host, port, err := hostPort(c)
		if err != nil {
			return err
		}
		if err := noMoreArgs(c); err != nil {
			return err
		}
		snap, ok = snapshot(c, host, port), true
		return nil
	}
	app.Run(append([]string{"seqknock", "proxy"}, args...))
	return snap, ok
}

// TestFastProxyParsesAsURFave: every command line the fast path accepts,
// urfave/cli accepts too, with the same value for every flag and operand;
// what it does not accept (help, completion, errors, the unusual) goes to
// urfave/cli.
func TestFastProxyParsesAsURFave(t *testing.T) {
	for _, tc := range []struct {
		args []string
		fast bool // whether the fast path takes it
	}{
		{[]string{"host", "22"}, true},
		{[]string{"--key-file", "/k", "--slots", "256", "--period", "10s", "198.18.0.1", "2202"}, true},
		{[]string{"--key-file=/k", "-slots=0x10", "--syn-timeout", "250ms", "-v", "h.example", "22"}, true},
		{[]string{"--verbose=false", "--4", "--6=true", "--bind-source-port=0", "--timeout", "-1s", "h", "022"}, false},
		{[]string{"--verbose=false", "--4", "--6=true", "--bind-source-port=0", "--timeout", "-1s", "x", "022"}, true},
		{[]string{"--config", "--realm", "--realm", "r", "x", "22"}, true}, // --config's value is "--realm"
		{[]string{"--realm", "a", "--realm=b", "x", "22"}, false},          // twice: left to urfave/cli
		{[]string{"--clock-offset=-4s", "--sign-key-file", "s", "--broker", "/b", "--alias", "", "x", "65535"}, true},
		{[]string{"-", "22"}, true},
		{[]string{"x", "22", "extra"}, false},
		{[]string{"x"}, false},
		{[]string{}, false},
		{[]string{"x", "0"}, false},
		{[]string{"x", "65536"}, false},
		{[]string{"x", "-1"}, false},
		{[]string{"x", "+22"}, false},
		{[]string{"--", "x", "22"}, false},
		{[]string{"---key-file", "k", "x", "22"}, false},
		{[]string{"-=x", "x", "22"}, false},
		{[]string{"--help"}, false},
		{[]string{"-h", "x", "22"}, false},
		{[]string{"help"}, false},
		{[]string{"help", "22"}, false},
		{[]string{"h", "22"}, false},
		{[]string{"x", "22", "--generate-bash-completion"}, false},
		{[]string{"--generate-bash-completion"}, false},
		{[]string{"--user", "nobody", "x", "22"}, false},
		{[]string{"--slots", "many", "x", "22"}, false},
		{[]string{"--slots", "99999999999999999999", "x", "22"}, false},
		{[]string{"--period", "10", "x", "22"}, false},
		{[]string{"--4=maybe", "x", "22"}, false},
		{[]string{"-v", "--verbose", "x", "22"}, false},
		{[]string{"--key-file"}, false},
		{[]string{"x", "22", "--key-file", "k"}, false},
	} {
		fa, ok := parseFastProxy(tc.args)
		if ok != tc.fast {
			t.Errorf("%q: fast path took it: %v, want %v", tc.args, ok, tc.fast)
		}
		if !ok {
			continue
		}
		want, uok := urfaveProxy(t, tc.args)
		if !uok {
			t.Errorf("%q: the fast path takes it, urfave/cli refuses it", tc.args)
			continue
		}
		if d := cmp.Diff(want, snapshot(fa, fa.host, fa.port)); d != "" {
			t.Errorf("%q: (-urfave +fast):\n%s", tc.args, d)
		}
	}
}

// TestFastProxyErrorsAsURFave: an error after parsing ends the fast path as
// it ends urfave/cli's (the same shared code): the same exit status and
// line on stderr. "--" before HOST sends the same command to urfave/cli.
func TestFastProxyErrorsAsURFave(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", dir)
	t.Setenv("XDG_STATE_HOME", dir)
	for _, args := range [][]string{
		{"--key-file", dir + "/missing.key", "127.0.0.1", "9"},
		{"127.0.0.1", "9"},
		{"--config", dir + "/missing.toml", "127.0.0.1", "9"},
		{"--period", "-3s", "--key-file", dir + "/missing.key", "127.0.0.1", "9"},
	} {
		if _, ok := parseFastProxy(args); !ok {
			t.Fatalf("%q: not taken by the fast path", args)
		}
		slow := append(append([]string{}, args[:len(args)-2]...), "--", args[len(args)-2], args[len(args)-1])
		var fo, fe, so, se bytes.Buffer
		fc := run(append([]string{"seqknock", "proxy"}, args...), strings.NewReader(""), &fo, &fe)
		sc := run(append([]string{"seqknock", "proxy"}, slow...), strings.NewReader(""), &so, &se)
		if fc == 0 || fc != sc || fe.String() != se.String() || fe.Len() == 0 {
			t.Errorf("%q: fast path: exit %d, %q; urfave/cli: exit %d, %q", args, fc, fe.String(), sc, se.String())
		}
	}
}
