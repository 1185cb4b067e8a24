// Command clirelay is figure 1's second baseline (scripts/bench/run.sh):
// the plain relay of scripts/bench/relay written as a urfave/cli app, the
// command-line library the seqknock client is built on. Its start-up
// against the plain relay's is what urfave/cli alone costs a process: the
// package's initialisation, and its help templates (text/template looks
// methods up by name, so the linker keeps every exported method of every
// type the program uses, and the binary grows). seqknock proxy pays the
// same, whatever it does itself; the bench prints the ratio as the bound
// beside its goal.
//
//	clirelay HOST PORT
//
// It is not part of the product: it only measures it.
package main

import (
	"fmt"
	"os"

	"github.com/seqknock/seqknock/scripts/bench/internal/benchrelay"
	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:      "clirelay",
		Usage:     "a plain relay as a urfave/cli app",
		ArgsUsage: "HOST PORT",
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return cli.Exit("usage: clirelay HOST PORT", 2)
			}
			return benchrelay.Relay(c.Args().Get(0), c.Args().Get(1))
		},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "clirelay:", err)
		os.Exit(1)
	}
}
