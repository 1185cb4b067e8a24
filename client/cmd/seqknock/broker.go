package main

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/client/broker"
	"github.com/urfave/cli/v2"
)

func brokerCommand() *cli.Command {
	return &cli.Command{
		Name:      "broker",
		Usage:     "serve the members of a group: set the TCP ISN of the sockets they send (a root service)",
		UsageText: "seqknock broker [--listen PATH] [--group GROUP] [--exit-idle DURATION]",
		Description: "Lends one privilege: setting the initial sequence number of a TCP socket its caller owns and " +
			"sends it, so seqknock needs neither sudo nor setcap. Callers must be root or in GROUP (as they " +
			"connect); the socket must be an unconnected TCP socket. Runs from seqknock-broker.socket " +
			"(socket activation, CAP_NET_ADMIN only) or by hand as root, which makes PATH (mode 0660, group GROUP) and then " +
			"gives up every capability but CAP_NET_ADMIN. Source ports below 1024 are refused. " +
			"Refused under sudo and from a setcap copy run by a user who is not root: its callers must not be able to stop it.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: broker.DefaultPath, Usage: "the socket `PATH` (when not socket-activated)"},
			&cli.StringFlag{Name: "group", Value: broker.DefaultGroup, Usage: "the `GROUP` (name or gid) whose members may ask"},
			&cli.DurationFlag{Name: "exit-idle", Usage: "exit after this long without a connection (0: never; systemd starts it again on demand)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usagef("broker: unexpected argument %q", c.Args().First())
			}
			// A broker its callers can stop (a setcap copy run by a user,
			// a sudo'd one under its user's terminal) could be stopped in
			// the middle of a request: it runs only as a system service.
			if inv, err := client.CurrentInvoker(); err != nil {
				return err
			} else if inv.Elevated {
				return fmt.Errorf("broker: refused under %s for uid %d: its user could stop it in the middle of a request; run the broker as the system service (systemctl enable --now seqknock-broker.socket)", inv.Via, inv.UID)
			}
			if err := client.CheckNotFileCapability(); err != nil {
				return fmt.Errorf("broker: %w", err)
			}
			if err := client.GuardCapabilities(); err != nil {
				return err
			}
			// CAP_NET_ADMIN in the effective set (no socket is opened: the
			// unit allows only Unix sockets).
			if err := client.CheckCapability(); errors.Is(err, client.ErrNoCapability) {
				return errors.New("broker: needs CAP_NET_ADMIN: run it as root, or start seqknock-broker.socket")
			} else if err != nil {
				return fmt.Errorf("broker: %w", err)
			}
			name := c.String("group")
			g, err := user.LookupGroup(name)
			if err != nil {
				if g, err = user.LookupGroupId(name); err != nil {
					return usagef("broker: --group %s: no such group", name)
				}
			}
			gid, _ := strconv.Atoi(g.Gid)
			// The socket: handed over by this binary's own image (below),
			// from systemd, or made here.
			ln, made, err := broker.Handed()
			if err != nil {
				return err
			}
			if ln == nil {
				if ln, err = broker.ActivatedListener(); err != nil {
					return err
				}
			}
			if ln == nil {
				if ln, err = broker.Listen(c.String("listen"), gid); err != nil {
					return err
				}
				made = c.String("listen")
			}
			if made != "" {
				// Made here, so removed here; systemd's socket stays.
				defer os.Remove(made)
			}
			// Run by hand as root: every capability but CAP_NET_ADMIN goes
			// (after the socket, whose group takes CAP_CHOWN), so that the
			// kernel's own checks apply to the binds it makes for callers.
			if err := broker.KeepOnlyNetAdmin(ln, made); err != nil {
				return err
			}
			log := serviceLog(c.App.ErrWriter)
			log.Info("broker serving", "socket", ln.Addr().String(), "group", g.Name, "gid", gid)
			ctx, cancel := signalContext()
			defer cancel()
			b := &broker.Server{GID: gid, GroupName: g.Name, IdleExit: c.Duration("exit-idle"), Log: log}
			err = b.Serve(ctx, ln)
			if err == nil {
				log.Info("broker stopped")
			}
			return err
		},
	}
}
