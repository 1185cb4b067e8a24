package main

import (
	"strings"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/internal/cliconv"
	"github.com/urfave/cli/v2"
)

// commands builds every command, in the order --help lists them.
func commands() []*cli.Command {
	var cmds []*cli.Command
	for _, mk := range []func() *cli.Command{
		keygenCommand, isnCommand, proxyCommand, fdpassCommand, execCommand,
		sshConfigCommand, fingerprintCommand, brokerCommand, gatewayCommand, socksCommand,
	} {
		c := mk()
		switch c.Name {
		case "proxy", "fdpass", "exec", "ssh-config", "fingerprint":
			c.BashComplete = cliconv.Complete(hostOperand)
		}
		cmds = append(cmds, c)
	}
	return cmds
}

// hostOperand is the shell completion of the HOST operand: the hosts the
// client config (--config, or the invoking user's) names without a
// pattern. Under sudo it offers nothing.
func hostOperand(c *cli.Context, n int) []string {
	if n != 0 {
		return nil
	}
	inv, err := client.CurrentInvoker()
	if err != nil || inv.Elevated {
		// Never read a config with another user's rights.
		return nil
	}
	cfg, err := inv.LoadConfig(c.String("config"))
	if err != nil {
		return nil
	}
	var hosts []string
	for _, h := range cfg.Hosts {
		if !strings.ContainsAny(h.Match, `*?[\`) {
			hosts = append(hosts, h.Match)
		}
	}
	return hosts
}
