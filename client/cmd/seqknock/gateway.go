package main

import (
	"fmt"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/client/gateway"
	"github.com/urfave/cli/v2"
)

func gatewayCommand() *cli.Command {
	return &cli.Command{
		Name:      "gateway",
		Usage:     "knock for every device behind a Linux router: take the LAN's redirected connections and relay them (a root service)",
		UsageText: "seqknock gateway [--config FILE] [--syn-timeout DURATION] [--timeout DURATION] [--check]",
		Description: "Installs its own nftables table (inet seqknock-gw) that redirects the LAN's connections to the " +
			"[[destination]] entries of FILE to its listener and drops those from sources not on a destination's allow list, " +
			"keeps that table in force, knocks on each destination with the key of its [[host]] in the client config and " +
			"relays; removes the table when it stops. Needs CAP_NET_ADMIN (root, or the seqknock-gateway.service unit).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Value: "/etc/seqknock/gateway.toml", Usage: "the gateway config `FILE`"},
			&cli.DurationFlag{Name: "syn-timeout", Value: client.DefaultSynTimeout, Usage: "wait this long for a SYN-ACK before trying the next slot"},
			&cli.DurationFlag{Name: "timeout", Usage: "give up a connection's knocks after this long (default: when the slots are spent)"},
			&cli.BoolFlag{Name: "check", Usage: "load the config, the client config and every key, print the destinations and exit; installs nothing"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("gateway: unexpected argument %q", c.Args().First())
			}
			if err := refuseElevated(c); err != nil {
				return err
			}
			gc, err := gateway.LoadConfig(c.String("config"))
			if err != nil {
				return err
			}
			inv, err := client.CurrentInvoker()
			if err != nil {
				return err
			}
			cc, err := client.LoadConfig(gc.ClientConfig, inv.Home, false)
			if err != nil {
				return err
			}
			dialers, err := gateway.NewDialers(gc, cc, client.Flags{SynTimeout: c.Duration("syn-timeout"), Timeout: c.Duration("timeout")})
			if err != nil {
				return usageError(err)
			}
			if c.Bool("check") {
				for _, d := range gc.Dests {
					fmt.Fprintf(c.App.Writer, "%s host %q allow %v\n", d.Addr, d.Host, d.Allow)
				}
				return nil
			}
			log := serviceLog(c.App.ErrWriter)
			ctx, cancel := signalContext()
			defer cancel()
			g := &gateway.Gateway{Config: gc, Dialers: dialers, Log: log}
			err = g.Run(ctx)
			if err == nil {
				log.Info("gateway stopped")
			}
			return err
		},
	}
}
