package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/internal/cliconv"
	"github.com/seqknock/seqknock/totp"
	"github.com/seqknock/seqknock/totp/keyfile"
	"github.com/urfave/cli/v2"
)

// dialFlags are shared by every command that connects.
func dialFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "client config `FILE` (default ~/.config/seqknock/client.toml; under sudo, read as the invoking user)"},
		&cli.StringFlag{Name: "key-file", Usage: "key `FILE` (overrides the config)"},
		&cli.StringFlag{Name: "realm", Usage: "the server's `REALM` (overrides the config)"},
		&cli.DurationFlag{Name: "period", Usage: "the server's counter period (overrides the config; default 30s)"},
		&cli.IntFlag{Name: "slots", Usage: "the server's slots per period (overrides the config; default 4)"},
		&cli.DurationFlag{Name: "syn-timeout", Value: client.DefaultSynTimeout, Usage: "wait this long for a SYN-ACK before trying the next slot"},
		&cli.DurationFlag{Name: "timeout", Usage: "give up the whole connect after this long (default: when the slots are spent)"},
		&cli.DurationFlag{Name: "clock-offset", Usage: "add this to the clock, to correct a known skew (e.g. -4s)"},
		&cli.BoolFlag{Name: "4", Usage: "IPv4 only"},
		&cli.BoolFlag{Name: "6", Usage: "IPv6 only"},
		&cli.StringFlag{Name: "alias", Usage: "the `NAME` given to ssh (its %n), looked up in the config before HOST"},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "say on stderr which [[host]] matched and each knock tried (address, counter, slot, wait)"},
	}
}

func hostPort(c *cli.Context) (string, uint16, error) {
	if c.NArg() < 2 {
		return "", 0, usagef("%s: want HOST PORT", c.Command.Name)
	}
	p, err := strconv.ParseUint(c.Args().Get(1), 10, 16)
	if err != nil || p == 0 {
		return "", 0, usagef("%s: port %q: want 1..65535", c.Command.Name, c.Args().Get(1))
	}
	return c.Args().Get(0), uint16(p), nil
}

// dialer builds the dialer for host:port from the flags and the invoking
// user's config; flags win.
func dialer(c *cli.Context, inv *client.Invoker, host string, port uint16) (*client.Dialer, error) {
	if c.Bool("4") && c.Bool("6") {
		return nil, usagef("-4 and -6 exclude each other")
	}
	cfgPath, explicit := c.String("config"), c.IsSet("config")
	if !explicit {
		cfgPath = filepath.Join(inv.ConfigDir(), "client.toml")
	}
	cfg, err := client.LoadConfig(cfgPath, inv.Home, !explicit)
	if err != nil {
		return nil, err
	}
	d := &client.Dialer{
		Period:      totp.DefaultPeriod,
		Slots:       totp.DefaultSlots,
		SynTimeout:  c.Duration("syn-timeout"),
		Timeout:     c.Duration("timeout"),
		ClockOffset: c.Duration("clock-offset"),
		Network:     "tcp",
		Reserve:     inv.SlotStore().Reserve,
	}
	// The name given to ssh first (Host prod), then the one it connects to
	// (its HostName, 203.0.113.7).
	names := []string{host}
	if a := c.String("alias"); a != "" && a != host {
		names = []string{a, host}
	}
	keyFile, fallback := "", []string(nil)
	for _, n := range names {
		if e := cfg.Lookup(n, port); e != nil {
			keyFile, fallback, d.Realm, d.Period, d.Slots = e.KeyFile, e.Fallback, e.Realm, e.Period, e.Slots
			verbosef(c, "%s matches [[host]] match = %q in %s", n, e.Match, cfgPath)
			break
		}
	}
	if c.IsSet("key-file") {
		keyFile, fallback = c.String("key-file"), nil
		verbosef(c, "key from --key-file %s", keyFile)
	}
	if c.IsSet("realm") {
		d.Realm = c.String("realm")
	}
	if c.IsSet("period") {
		d.Period = c.Duration("period")
	}
	if c.IsSet("slots") {
		d.Slots = c.Int("slots")
	}
	if keyFile == "" {
		return nil, usagef("no [[host]] in %s matches %s port %d, and no --key-file given", cfgPath, strings.Join(names, " or "), port)
	}
	if err := totp.ValidatePeriod(d.Period); err != nil {
		return nil, usagef("--period: %w", err)
	}
	if d.Slots < 1 || d.Slots > totp.MaxSlots {
		return nil, usagef("--slots %d out of range 1..%d", d.Slots, totp.MaxSlots)
	}
	if err := totp.ValidateRealm(d.Realm); err != nil {
		return nil, usagef("--realm: %w", err)
	}
	if c.Bool("4") {
		d.Network = "tcp4"
	}
	if c.Bool("6") {
		d.Network = "tcp6"
	}
	if d.Key, err = keyfile.Load(keyFile); err != nil {
		return nil, err
	}
	for _, f := range fallback {
		k, err := keyfile.Load(f)
		if err != nil {
			return nil, err
		}
		d.Fallback = append(d.Fallback, k)
	}
	if c.Bool("verbose") {
		synTimeout := d.SynTimeout
		d.OnAttempt = func(ap netip.AddrPort, counter uint64, slot int, _ uint32) {
			verbosef(c, "knock %s counter %d slot %d (of %d), waiting %v for a SYN-ACK", ap, counter, slot, d.Slots, synTimeout)
		}
	}
	return d, nil
}

// verbosef writes one line to stderr under -v; never to stdout, which
// carries the connection.
func verbosef(c *cli.Context, format string, a ...any) {
	if c.Bool("verbose") {
		fmt.Fprintf(c.App.ErrWriter, "seqknock: "+format+"\n", a...)
	}
}

// connectCommand is proxy, fdpass or exec: check the operands (check),
// connect with a knock and give up every privilege (connect), and hand the
// socket on (use).
func connectCommand(name, usage, usageText, description string, extra []cli.Flag,
	check func(c *cli.Context) error, use func(c *cli.Context, conn *net.TCPConn) error) *cli.Command {
	return &cli.Command{
		Name:        name,
		Usage:       usage,
		UsageText:   usageText,
		Description: description,
		Flags:       append(dialFlags(), extra...),
		Action: func(c *cli.Context) error {
			host, port, err := hostPort(c)
			if err != nil {
				return err
			}
			if err := check(c); err != nil {
				return err
			}
			conn, err := connect(c, host, port)
			if err != nil {
				return err
			}
			defer conn.Close()
			return use(c, conn)
		},
	}
}

// connect acts for the invoking user (actFor), dials host:port with a
// knock and gives up every privilege. In the image a cgo build hands the
// socket to (client.HandOver), it takes that socket instead.
func connect(c *cli.Context, host string, port uint16) (*net.TCPConn, error) {
	inv, err := actFor(c, true)
	if err != nil {
		return nil, err
	}
	if conn, err := client.Handed(); conn != nil || err != nil {
		return conn, err
	}
	d, err := dialer(c, inv, host, port)
	if err != nil {
		return nil, err
	}
	ctx, cancel := signalContext()
	defer cancel()
	conn, err := d.Dial(ctx, host, port)
	if err != nil {
		return nil, err
	}
	if err := client.DropPrivileges(conn); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// actFor returns the user the command acts for. Under sudo (or in a
// set-user-ID run, or for root's --user) it first becomes that user,
// keeping CAP_NET_ADMIN alone when netAdmin, and starts afresh as them
// (client.Become), so nothing is read or written with root's rights.
func actFor(c *cli.Context, netAdmin bool) (*client.Invoker, error) {
	inv, err := client.CurrentInvoker()
	if err != nil {
		return nil, err
	}
	if inv, err = inv.ForUser(c.String("user")); err != nil {
		return nil, cliconv.UsageError{Err: err}
	}
	if inv.Elevated {
		return nil, client.Become(inv, netAdmin, os.Args)
	}
	// Before a file is read: while it holds CAP_NET_ADMIN, the process
	// must not be traceable or readable through /proc by its user.
	if err := client.GuardCapabilities(); err != nil {
		return nil, err
	}
	return inv, nil
}

// programExit ends seqknock exec the way its program ended, without a
// message: the same signal (for those the Go runtime turns into death by
// that signal) or the same status (128+n for other signals, as a shell
// reports them).
func programExit(err error) error {
	var es *client.ExitStatus
	if !errors.As(err, &es) {
		return err
	}
	switch es.Signal {
	case syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM, syscall.SIGKILL:
		signal.Reset(es.Signal)
		syscall.Kill(os.Getpid(), es.Signal)
		// The signal arrives asynchronously: wait for it rather than
		// exit first.
		time.Sleep(time.Second)
	}
	return cli.Exit("", es.Code)
}

// refuseElevated is the first step of the commands that need no privilege:
// they do not run with another user's rights at all.
func refuseElevated(c *cli.Context) error {
	inv, err := client.CurrentInvoker()
	if err != nil {
		return err
	}
	if inv.Elevated {
		return fmt.Errorf("%s needs no privilege: run it without sudo (refused under %s for uid %d)", c.Command.Name, inv.Via, inv.UID)
	}
	return nil
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
}

// noMoreArgs is the operand check of proxy and fdpass: HOST PORT only.
func noMoreArgs(c *cli.Context) error {
	if c.NArg() > 2 {
		return usagef("%s: unexpected argument %q", c.Command.Name, c.Args().Get(2))
	}
	return nil
}

func proxyCommand() *cli.Command {
	return connectCommand("proxy", "connect with a knock and relay stdin/stdout (OpenSSH ProxyCommand)",
		"seqknock proxy [options] HOST PORT",
		"For ~/.ssh/config: ProxyCommand seqknock proxy %h %p. Needs CAP_NET_ADMIN (sudo or setcap); "+
			"gives up every privilege once connected.",
		nil, noMoreArgs,
		func(_ *cli.Context, conn *net.TCPConn) error { return client.Relay(conn, os.Stdin, os.Stdout) })
}

func fdpassCommand() *cli.Command {
	return connectCommand("fdpass", "connect with a knock and hand the socket to ssh (ProxyUseFdpass)",
		"seqknock fdpass [options] HOST PORT",
		"For ~/.ssh/config: ProxyCommand seqknock fdpass %h %p with ProxyUseFdpass yes. "+
			"Passes the connected socket over stdout and exits.",
		nil, noMoreArgs,
		func(_ *cli.Context, conn *net.TCPConn) error { return client.SendFD(os.Stdout, conn) })
}

func execCommand() *cli.Command {
	return connectCommand("exec", "connect with a knock, give up every privilege and run PROGRAM with the socket on fds 6 and 7",
		"seqknock exec [options] HOST PORT -- PROGRAM [ARGS...]",
		"In the style of UCSPI-TCP's tcpclient: connects, gives up every privilege, and runs PROGRAM "+
			"with the socket on fd 6 (read) and fd 7 (write) and TCPREMOTEIP, TCPREMOTEPORT, TCPLOCALIP, "+
			"TCPLOCALPORT in the environment; waits for it and exits as it did. Under sudo everything runs "+
			"as the user who ran sudo.",
		[]cli.Flag{&cli.StringFlag{Name: "user", Usage: "root only: act for `USER` (name or uid) as under sudo; refused for anyone else"}},
		func(c *cli.Context) error {
			_, err := programArgs(c)
			return err
		},
		func(c *cli.Context, conn *net.TCPConn) error {
			args, _ := programArgs(c)
			return programExit(client.Exec(conn, args[0], args[1:]))
		})
}

// programArgs is exec's PROGRAM [ARGS...], after HOST PORT and "--".
func programArgs(c *cli.Context) ([]string, error) {
	if c.NArg() < 3 {
		return nil, usagef("exec: want HOST PORT -- PROGRAM [ARGS...]")
	}
	args := c.Args().Slice()[2:]
	if args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		return nil, usagef("exec: no PROGRAM after --")
	}
	return args, nil
}

func sshConfigCommand() *cli.Command {
	return &cli.Command{
		Name:      "ssh-config",
		Usage:     "print the ~/.ssh/config stanza that connects to HOST through seqknock",
		UsageText: "seqknock ssh-config [--fdpass] [--sudo] [--config FILE | --key-file FILE] HOST",
		Description: "HOST, the name you give ssh, must match a [[host]] entry of the client config, or --key-file " +
			"must name the key (it then goes into the ProxyCommand). The ProxyCommand passes ssh's %n as --alias, " +
			"so a [[host]] may name the alias (Host prod) while ssh connects to its HostName. The stanza ends with " +
			"commented ControlMaster lines; with --sudo, with the sudoers rule that sudo -n needs.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "fdpass", Usage: "use ProxyUseFdpass (ssh talks to the socket directly; no relay process stays)"},
			&cli.BoolFlag{Name: "sudo", Usage: "run seqknock with sudo -n (when the binary has no cap_net_admin file capability); needs a NOPASSWD sudoers rule, printed as a comment"},
			&cli.StringFlag{Name: "config", Usage: "client config `FILE` (default ~/.config/seqknock/client.toml)"},
			&cli.StringFlag{Name: "key-file", Usage: "key `FILE`, for a host with no [[host]] entry"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("ssh-config: want HOST")
			}
			host := c.Args().First()
			inv, err := actFor(c, false)
			if err != nil {
				return err
			}
			cfg, err := clientConfig(c, inv)
			if err != nil {
				return err
			}
			cfgPath := cfg.Path
			if !cfg.HasHost(host) && !c.IsSet("key-file") {
				return usagef("ssh-config: no [[host]] in %s matches %s; add one, or give --key-file", cfgPath, host)
			}
			self, err := os.Executable()
			if err != nil {
				self = "seqknock"
			}
			cmd := self
			if c.Bool("sudo") {
				cmd = "sudo -n " + cmd
			}
			verb := "proxy"
			if c.Bool("fdpass") {
				verb = "fdpass"
			}
			cmd += " " + verb
			// ssh runs the ProxyCommand from wherever it was started.
			if c.IsSet("config") {
				cmd += " --config " + absPath(cfgPath)
			}
			if c.IsSet("key-file") {
				if _, err := keyfile.Load(c.String("key-file")); err != nil {
					return fmt.Errorf("ssh-config: %w", err)
				}
				cmd += " --key-file " + absPath(c.String("key-file"))
			}
			w := c.App.Writer
			fmt.Fprintf(w, "Host %s\n    ProxyCommand %s --alias %%n %%h %%p\n", host, cmd)
			if c.Bool("fdpass") {
				fmt.Fprintf(w, "    ProxyUseFdpass yes\n")
			}
			// A knock is spent by its first SYN; seqknock itself tries the
			// other slots, so ssh makes one attempt.
			fmt.Fprintf(w, "    ConnectionAttempts 1\n")
			fmt.Fprintf(w, "    # Each connection spends a knock and a server allows a few per period (4 by default):\n"+
				"    # uncomment to let repeated ssh, scp and Ansible runs share one connection.\n"+
				"    # ControlMaster auto\n    # ControlPath ~/.ssh/seqknock-%%C\n    # ControlPersist 10m\n")
			if c.Bool("sudo") {
				name := "USER"
				if u, err := user.Current(); err == nil {
					name = u.Username
				}
				fmt.Fprintf(w, "    # sudo -n asks no password, so it needs this rule (sudo visudo -f /etc/sudoers.d/seqknock)\n"+
					"    #   %%seqknock ALL=(root) NOPASSWD: %s\n"+
					"    # and you in group seqknock (sudo usermod -aG seqknock %s); see UNDER SUDO in seqknock(1).\n", self, name)
			}
			return nil
		},
	}
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
