package main

import "github.com/urfave/cli/v2"

func commands() []*cli.Command {
	return []*cli.Command{
		keygenCommand(),
		isnCommand(),
		proxyCommand(),
		fdpassCommand(),
		execCommand(),
		sshConfigCommand(),
		manCommand(),
	}
}

// manCommand prints the man page generated from these definitions; the
// install script writes it to man1/seqknock.1.
func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "print the man page (roff)",
		Hidden: true,
		Action: func(c *cli.Context) error {
			page, err := c.App.ToManWithSection(1)
			if err != nil {
				return err
			}
			_, err = c.App.Writer.Write([]byte(page))
			return err
		},
	}
}
