package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"strings"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/client/broker"
	"github.com/seqknock/seqknock/client/socks"
	"github.com/urfave/cli/v2"
)

func socksCommand() *cli.Command {
	return &cli.Command{
		Name:      "socks",
		Usage:     "a local SOCKS5 and HTTP CONNECT proxy that knocks for the destinations of the client config",
		UsageText: "seqknock socks [--listen ADDR]... [--socket PATH] [options]",
		Description: "Serves SOCKS5 (CONNECT; IPv4, IPv6 and names) and HTTP CONNECT on each listener. A destination " +
			"a [[host]] of the client config covers is dialed with a knock and relayed; any other is refused " +
			"(SOCKS5 reply 2, HTTP 403) and nothing is dialed. A name matches [[host]] as for proxy; an address " +
			"only a [[host]] whose match is that address. Only this user is served: on the Unix socket (mode 0600) " +
			"and, on loopback TCP, each peer whose socket this user owns; anyone else only with socks_user and " +
			"socks_password_file (SOCKS5 username/password, or HTTP Basic Proxy-Authorization). " +
			"Privilege as for proxy (setcap, sudo, root or the broker); with setcap or sudo the process keeps " +
			"CAP_NET_ADMIN while it runs.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "client config `FILE` (default ~/.config/seqknock/client.toml; under sudo, read as the invoking user)"},
			&cli.StringSliceFlag{Name: "listen", Value: cli.NewStringSlice("127.0.0.1:1080"), Usage: "TCP `ADDR` to listen on (repeat for more; \"none\" for no TCP listener)"},
			&cli.StringFlag{Name: "socket", Usage: "Unix socket `PATH` to listen on (default $XDG_RUNTIME_DIR/seqknock/socks.sock; \"none\" for no Unix socket)"},
			&cli.DurationFlag{Name: "syn-timeout", Value: client.DefaultSynTimeout, Usage: "wait this long for a SYN-ACK before trying the next slot"},
			&cli.IntFlag{Name: "attempts", Value: client.DefaultAttempts, Usage: "knocks to send for each connect, each on a slot of its own, before giving up (each spends a slot of the period)"},
			&cli.DurationFlag{Name: "timeout", Usage: "give up a whole connect after this long (default: when the attempts are spent)"},
			&cli.DurationFlag{Name: "clock-offset", Usage: "add this to the clock, to correct a known skew (e.g. -4s)"},
			&cli.StringFlag{Name: "broker", Usage: "the broker's socket `PATH`, asked when seqknock holds no CAP_NET_ADMIN (overrides the config; default " + broker.DefaultPath + ")"},
			&cli.DurationFlag{Name: "handshake-timeout", Value: socks.DefaultHandshakeTimeout, Usage: "close a client that has not sent a whole request after this long"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "log each knock tried"},
		},
		Action: runSocks,
	}
}

func runSocks(c *cli.Context) error {
	if c.NArg() != 0 {
		return usagef("socks: unexpected argument %q", c.Args().First())
	}
	if c.Int("attempts") < 1 {
		return usagef("--attempts %d: want 1 or more", c.Int("attempts"))
	}
	inv, err := actFor("", true)
	if err != nil {
		return err
	}
	cfg, err := inv.LoadConfig(c.String("config"))
	if err != nil {
		return err
	}
	if len(cfg.Hosts) == 0 {
		return usagef("socks: %s has no [[host]]: nothing to proxy to", cfg.Path)
	}
	password := ""
	if cfg.SocksUser != "" {
		if password, err = socks.LoadPassword(cfg.SocksPasswordFile); err != nil {
			return err
		}
	}
	if note := client.PrivilegeNote(client.BrokerPath(cfg, c.String("broker"))); strings.HasPrefix(note, "not ready:") {
		return errors.New("socks: " + note)
	}
	logger := log.New(c.App.ErrWriter, "seqknock socks: ", 0)
	var verbosef func(string, ...any)
	if c.Bool("verbose") {
		verbosef = logger.Printf
	}
	slots := inv.SlotStore()
	srv := &socks.Server{
		Cover: func(d socks.Dest) bool {
			e, _ := socks.Cover(cfg, d)
			return e != nil
		},
		Dial: func(ctx context.Context, d socks.Dest) (*net.TCPConn, error) {
			e, name := socks.Cover(cfg, d)
			if e == nil {
				return nil, errors.New("no [[host]] covers it")
			}
			// Resolve sees the covering entry alone, whatever else
			// its name would match.
			one := &client.Config{Path: cfg.Path, Broker: cfg.Broker, Hosts: []client.HostEntry{*e}}
			dd, err := client.Resolve(one, client.Flags{
				SynTimeout: c.Duration("syn-timeout"), Timeout: c.Duration("timeout"), Attempts: c.Int("attempts"),
				ClockOffset: c.Duration("clock-offset"), Broker: c.String("broker"), Verbosef: verbosef,
			}, name, d.Port)
			if err != nil {
				return nil, err
			}
			dd.Reserve = slots.Reserve
			dd.OnPortBusy = func(sport uint16, counter uint64, slot int) {
				logger.Printf("source port %d (counter %d slot %d) is in use here; bind_source_port moves to the next slot", sport, counter, slot)
			}
			return dd.Dial(ctx, d.Host, d.Port)
		},
		Owner:            socks.SameUser(inv.UID),
		User:             cfg.SocksUser,
		Password:         password,
		Logf:             logger.Printf,
		HandshakeTimeout: c.Duration("handshake-timeout"),
	}
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for _, addr := range c.StringSlice("listen") {
		if addr == "none" {
			continue
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("socks: %w", err)
		}
		listeners = append(listeners, l)
	}
	path := c.String("socket")
	if path == "" {
		path = socks.DefaultSocketPath(os.Getenv("XDG_RUNTIME_DIR"), inv.UID)
	}
	if path != "none" {
		l, err := socks.ListenUnix(path)
		if err != nil {
			return fmt.Errorf("socks: %w", err)
		}
		l.SetUnlinkOnClose(true)
		listeners = append(listeners, l)
	}
	if len(listeners) == 0 {
		return usagef("socks: --listen none and --socket none: nothing to listen on")
	}
	ctx, cancel := signalContext()
	defer cancel()
	var names []string
	for _, l := range listeners {
		names = append(names, l.Addr().String())
	}
	logger.Printf("serving uid %d on %s with %d [[host]] from %s", inv.UID, strings.Join(names, " and "), len(cfg.Hosts), cfg.Path)
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { errc <- srv.Serve(ctx, l) }()
	}
	select {
	case <-ctx.Done():
		logger.Printf("stopped")
		return nil
	case err := <-errc:
		return err
	}
}
