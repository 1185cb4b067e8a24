package cliconv

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// Complete is a command's shell completion. The completion scripts
// (scripts/completion) run the words before the cursor, the word being
// completed (perhaps empty) and --generate-bash-completion. It prints the
// command's flags for a word that starts with "-"; nothing after a flag
// that takes a value, so the shell completes file names; and otherwise
// operands(c, n), the candidates for the n-th operand (from 0), when
// operands is not nil.
func Complete(operands func(c *cli.Context, n int) []string) cli.BashCompleteFunc {
	return func(c *cli.Context) {
		words := os.Args
		if len(words) > 0 && words[len(words)-1] == "--generate-bash-completion" {
			words = words[:len(words)-1]
		}
		if len(words) < 2 {
			return
		}
		cur, prev := words[len(words)-1], words[len(words)-2]
		w := c.App.Writer
		if strings.HasPrefix(cur, "-") {
			for _, f := range c.Command.VisibleFlags() {
				for _, n := range f.Names() {
					name := "--" + n
					if len(n) == 1 {
						name = "-" + n
					}
					if strings.HasPrefix(name, cur) {
						fmt.Fprintln(w, name)
					}
				}
			}
			return
		}
		if f := lookupFlag(c.Command.Flags, prev); f != nil && Placeholder(f) != "" {
			return
		}
		if operands == nil {
			return
		}
		// The word being completed is parsed as an operand too.
		for _, s := range operands(c, c.NArg()-1) {
			fmt.Fprintln(w, s)
		}
	}
}

func lookupFlag(flags []cli.Flag, word string) cli.Flag {
	name := strings.TrimLeft(word, "-")
	if name == word || strings.Contains(name, "=") {
		return nil
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}
