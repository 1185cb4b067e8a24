package main

import (
	"fmt"
	"time"

	"github.com/seqknock/seqknock/client"

	"github.com/seqknock/seqknock/internal/keygencmd"
	"github.com/seqknock/seqknock/totp"
	"github.com/seqknock/seqknock/totp/keyfile"
	"github.com/urfave/cli/v2"
)

func keygenCommand() *cli.Command {
	c := keygencmd.Command("seqknock", refuseElevated)
	c.Description += " Refused under sudo: it needs no privilege (administrators make users' keys with seqknockd keygen)."
	return c
}

func isnCommand() *cli.Command {
	return &cli.Command{
		Name:      "isn",
		Usage:     "print the ISN a knock carries (for scripts and checks)",
		UsageText: "seqknock isn --key-file F --port P [--realm R] [--slot S | --all-slots] [--counter C | --at TIME]",
		Description: "Prints the decimal ISN alone on one line, or with --all-slots one line per slot: SLOT ISN. " +
			"TIME is RFC 3339 (2026-01-02T15:04:05Z); the default is now.",
		Flags: append(append([]cli.Flag{
			&cli.StringFlag{Name: "key-file", Usage: "key `FILE` (required)"},
			&cli.UintFlag{Name: "port", Usage: "destination TCP `PORT` (required)"},
		}, serverFlags("")...),
			&cli.UintFlag{Name: "slot", Usage: "`SLOT` number, 0 .. slots-1"},
			&cli.BoolFlag{Name: "all-slots", Usage: "print every slot: SLOT ISN"},
			&cli.Uint64Flag{Name: "counter", Usage: "use counter `C` instead of a time"},
			&cli.StringFlag{Name: "at", Usage: "derive for `TIME` (RFC 3339) instead of now"},
		),
		Action: isnAction,
	}
}

func isnAction(c *cli.Context) error {
	if err := refuseElevated(c); err != nil {
		return err
	}
	if c.NArg() > 0 {
		return usagef("isn: unexpected argument %q", c.Args().First())
	}
	if !c.IsSet("key-file") || !c.IsSet("port") {
		return usagef("isn: --key-file and --port are required")
	}
	port := c.Uint("port")
	if port < 1 || port > 65535 {
		return usagef("isn: --port %d out of range 1..65535", port)
	}
	realm, period, nslots, err := client.Knock(serverFlagValues(c))
	if err != nil {
		return usagef("isn: %w", err)
	}
	slots := uint(nslots)
	if c.IsSet("slot") && c.Bool("all-slots") {
		return usagef("isn: --slot and --all-slots exclude each other")
	}
	slot := c.Uint("slot")
	if slot >= slots {
		return usagef("isn: --slot %d out of range 0..%d", slot, slots-1)
	}
	var counter uint64
	switch {
	case c.IsSet("counter") && c.IsSet("at"):
		return usagef("isn: --counter and --at exclude each other")
	case c.IsSet("counter"):
		counter = c.Uint64("counter")
	case c.IsSet("at"):
		t, err := time.Parse(time.RFC3339, c.String("at"))
		if err != nil {
			return usagef("isn: --at %q is not RFC 3339 (like 2026-01-02T15:04:05Z)", c.String("at"))
		}
		counter = totp.Counter(t, period)
	default:
		counter = totp.Counter(time.Now(), period)
	}
	key, err := keyfile.Load(c.String("key-file"))
	if err != nil {
		return err
	}
	d, err := totp.NewDeriver(key, realm)
	if err != nil {
		return fmt.Errorf("isn: %w", err)
	}
	if c.Bool("all-slots") {
		for s := uint(0); s < slots; s++ {
			fmt.Fprintf(c.App.Writer, "%d %d\n", s, d.ISN(uint16(port), counter, uint8(s)))
		}
		return nil
	}
	fmt.Fprintf(c.App.Writer, "%d\n", d.ISN(uint16(port), counter, uint8(slot)))
	return nil
}

func fingerprintCommand() *cli.Command {
	return &cli.Command{
		Name:      "fingerprint",
		Usage:     "print the fingerprint of each key the client config names, to compare with the server's",
		UsageText: "seqknock fingerprint [--config FILE] [HOST]\n   seqknock fingerprint --key-file FILE",
		Description: "Prints one line per key of each [[host]] entry (only those matching HOST when given): " +
			"the entry's match and port, the key's fingerprint and its file, preferred key first. " +
			"A fingerprint (SHA256:...) names a key without revealing it; the server shows the same " +
			"string for the same key, so a knock that is never admitted can be checked against the " +
			"keys the server holds for you.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Usage: "client config `FILE` (default ~/.config/seqknock/client.toml)"},
			&cli.StringFlag{Name: "key-file", Usage: "print the fingerprint of this key `FILE` alone"},
		},
		Action: func(c *cli.Context) error {
			if err := refuseElevated(c); err != nil {
				return err
			}
			if c.NArg() > 1 {
				return usagef("fingerprint: unexpected argument %q", c.Args().Get(1))
			}
			if f := c.String("key-file"); f != "" {
				if c.NArg() > 0 || c.IsSet("config") {
					return usagef("fingerprint: --key-file goes alone")
				}
				key, err := keyfile.Load(f)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "%s %s\n", totp.Fingerprint(key), f)
				return nil
			}
			inv, err := client.CurrentInvoker()
			if err != nil {
				return err
			}
			cfg, err := inv.LoadConfig(c.String("config"))
			if err != nil {
				return err
			}
			lines, err := client.Fingerprints(cfg, c.Args().First())
			if err != nil {
				return usageError(err)
			}
			for _, l := range lines {
				fmt.Fprintln(c.App.Writer, l)
			}
			return nil
		},
	}
}
