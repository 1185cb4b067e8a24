package cliconv

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// flagString is the help line of a flag: "-c, --config FILE\tusage
// (default: X) [$ENV]". The placeholder is the usage's `QUOTED` word, or
// named after the value's type. The default is shown when the flag has a
// non-zero one and its usage does not already talk about its default.
func flagString(f cli.Flag) string {
	df, ok := f.(cli.DocGenerationFlag)
	if !ok {
		return ""
	}
	placeholder, usage := unquote(df.GetUsage())
	if df.TakesValue() && placeholder == "" {
		placeholder = Placeholder(f)
	}
	var short, long []string
	for _, n := range df.Names() {
		if len(n) == 1 {
			short = append(short, "-"+n)
		} else {
			long = append(long, "--"+n)
		}
	}
	names := strings.Join(append(short, long...), ", ")
	if placeholder != "" {
		names += " " + placeholder
	}
	if def := strings.Trim(df.GetDefaultText(), `"`); !zero(def) && !strings.Contains(usage, "default") {
		usage += " (default: " + def + ")"
	}
	if env := df.GetEnvVars(); len(env) > 0 {
		usage += " [$" + strings.Join(env, ", $") + "]"
	}
	return names + "\t" + usage
}

func zero(s string) bool {
	switch s {
	case "", "0", "0s", "false", "[]":
		return true
	}
	return false
}

// unquote returns the `QUOTED` word of a usage and the usage without the
// backquotes.
func unquote(usage string) (string, string) {
	i := strings.IndexByte(usage, '`')
	if i < 0 {
		return "", usage
	}
	j := strings.IndexByte(usage[i+1:], '`')
	if j < 0 {
		return "", usage
	}
	name := usage[i+1 : i+1+j]
	return name, usage[:i] + name + usage[i+2+j:]
}

// Placeholder names what a flag takes: its usage's `QUOTED` word, else
// DURATION, N or VALUE after its type; "" for a flag that takes nothing.
func Placeholder(f cli.Flag) string {
	df, ok := f.(cli.DocGenerationFlag)
	if !ok || !df.TakesValue() {
		return ""
	}
	if p, _ := unquote(df.GetUsage()); p != "" {
		return p
	}
	switch f.(type) {
	case *cli.DurationFlag:
		return "DURATION"
	case *cli.IntFlag, *cli.UintFlag, *cli.Int64Flag, *cli.Uint64Flag:
		return "N"
	}
	return "VALUE"
}
