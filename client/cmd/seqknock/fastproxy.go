package main

import (
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/internal/cliconv"
)

// The fast path of seqknock proxy, the command ssh starts for every
// connection. Building the urfave/cli app and parsing through it (flag
// sets, help and version flags, name lookups through a regexp) was about a
// fifth of what proxy adds to a process start (issue 16). fastProxy parses
// the plain command lines ssh passes, "proxy [flags] HOST PORT", by the
// rules of the Go flag package that urfave/cli uses, and runs the same
// connect and relay as proxyCommand. Anything else it leaves to urfave/cli:
// help (-h, --help, the help subcommand), completion, "--", a flag it does
// not know or given twice, a value that does not parse, wrong operands.
// Errors, usage included, therefore always come from urfave/cli or from the
// shared connect code, never from here.
//
// proxyFastFlags must list exactly proxyCommand's flags, with their
// aliases, kinds and defaults: TestFastProxyFlagsMatch checks it against
// the urfave/cli definitions, and TestFastProxyParsesAsURFave that both
// parsers see the same values.

// fastKind is a flag's value type, as urfave/cli's flag types have them.
type fastKind int

const (
	fastString fastKind = iota
	fastBool
	fastInt
	fastDuration
)

// fastFlag is one of proxy's flags: its name (the first of names), kind
// and default.
type fastFlag struct {
	names []string
	kind  fastKind
	def   any
}

// proxyFastFlags are proxy's flags (dialFlags) for the fast path.
var proxyFastFlags = []fastFlag{
	{names: []string{"config"}, kind: fastString, def: ""},
	{names: []string{"key-file"}, kind: fastString, def: ""},
	{names: []string{"realm"}, kind: fastString, def: ""},
	{names: []string{"period"}, kind: fastDuration, def: time.Duration(0)},
	{names: []string{"slots"}, kind: fastInt, def: 0},
	{names: []string{"syn-timeout"}, kind: fastDuration, def: client.DefaultSynTimeout},
	{names: []string{"timeout"}, kind: fastDuration, def: time.Duration(0)},
	{names: []string{"clock-offset"}, kind: fastDuration, def: time.Duration(0)},
	{names: []string{"4"}, kind: fastBool, def: false},
	{names: []string{"6"}, kind: fastBool, def: false},
	{names: []string{"bind-source-port"}, kind: fastBool, def: false},
	{names: []string{"sign-key-file"}, kind: fastString, def: ""},
	{names: []string{"alias"}, kind: fastString, def: ""},
	{names: []string{"broker"}, kind: fastString, def: ""},
	{names: []string{"verbose", "v"}, kind: fastBool, def: false},
}

// fastArgs is a command line fastProxy accepted: the flags given (by the
// first of their names) with their parsed values, and the operands. It is
// read as a *cli.Context is (flagValues).
type fastArgs struct {
	set  map[string]any
	host string
	port uint16
}

// lookup is the flag named name (any of its names) and its value: as
// given, else its default. ok is false for a name proxy does not have.
func (a *fastArgs) lookup(name string) (v any, set bool, ok bool) {
	f := fastFlagNamed(name)
	if f == nil {
		return nil, false, false
	}
	if v, set := a.set[f.names[0]]; set {
		return v, true, true
	}
	return f.def, false, true
}

// value is flag name's value if it has type T, else T's zero value (as a
// *cli.Context gives for a name it does not know or of another type).
func value[T any](a *fastArgs, name string) T {
	v, _, _ := a.lookup(name)
	t, _ := v.(T)
	return t
}

func (a *fastArgs) String(name string) string          { return value[string](a, name) }
func (a *fastArgs) Bool(name string) bool              { return value[bool](a, name) }
func (a *fastArgs) Int(name string) int                { return value[int](a, name) }
func (a *fastArgs) Duration(name string) time.Duration { return value[time.Duration](a, name) }
func (a *fastArgs) IsSet(name string) bool {
	_, set, _ := a.lookup(name)
	return set
}

// parseFastProxy parses the arguments after "proxy". ok is false for
// anything it leaves to urfave/cli (see above).
func parseFastProxy(args []string) (a *fastArgs, ok bool) {
	a = &fastArgs{set: map[string]any{}}
	i := 0
	for ; i < len(args); i++ {
		arg := args[i]
		if len(arg) < 2 || arg[0] != '-' {
			break // the operands
		}
		name := arg[1:]
		if name[0] == '-' {
			name = name[1:]
		}
		if name == "" || name[0] == '-' || name[0] == '=' {
			return nil, false // "--", or what the flag package refuses
		}
		name, val, hasVal := strings.Cut(name, "=")
		f := fastFlagNamed(name)
		if f == nil {
			return nil, false
		}
		if _, dup := a.set[f.names[0]]; dup {
			return nil, false
		}
		if f.kind == fastBool {
			b := true
			if hasVal {
				var err error
				if b, err = strconv.ParseBool(val); err != nil {
					return nil, false
				}
			}
			a.set[f.names[0]] = b
			continue
		}
		if !hasVal {
			if i+1 == len(args) {
				return nil, false
			}
			i++
			val = args[i]
		}
		switch f.kind {
		case fastString:
			a.set[f.names[0]] = val
		case fastInt:
			// As the flag package's int flags parse.
			n, err := strconv.ParseInt(val, 0, strconv.IntSize)
			if err != nil {
				return nil, false
			}
			a.set[f.names[0]] = int(n)
		case fastDuration:
			d, err := time.ParseDuration(val)
			if err != nil {
				return nil, false
			}
			a.set[f.names[0]] = d
		}
	}
	ops := args[i:]
	// HOST PORT, and nothing urfave/cli reads otherwise (its help
	// subcommand) or proxy refuses (hostPort).
	if len(ops) != 2 || ops[0] == "help" || ops[0] == "h" || strings.HasPrefix(ops[1], "-") {
		return nil, false
	}
	p, err := strconv.ParseUint(ops[1], 10, 16)
	if err != nil || p == 0 {
		return nil, false
	}
	a.host, a.port = ops[0], uint16(p)
	return a, true
}

func fastFlagNamed(name string) *fastFlag {
	for i := range proxyFastFlags {
		for _, n := range proxyFastFlags[i].names {
			if n == name {
				return &proxyFastFlags[i]
			}
		}
	}
	return nil
}

// fastProxy runs seqknock proxy for args (those after "proxy") when
// parseFastProxy accepts them, and returns the exit status; handled is
// false when it left them to urfave/cli.
func fastProxy(args []string, stdin io.Reader, stdout, stderr io.Writer) (code int, handled bool) {
	a, ok := parseFastProxy(args)
	if !ok {
		return 0, false
	}
	err := func() error {
		conn, err := connect(a, "", stderr, a.host, a.port)
		if err != nil {
			return err
		}
		defer conn.Close()
		return relay(conn, stdin, stdout)
	}()
	return cliconv.Exit("seqknock", err, stderr), true
}
