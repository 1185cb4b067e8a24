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
	}
}
