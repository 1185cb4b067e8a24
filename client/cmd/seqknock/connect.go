package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/client/broker"
	"github.com/seqknock/seqknock/internal/cliconv"
	"github.com/seqknock/seqknock/internal/covhook"
	"github.com/urfave/cli/v2"
)

// dialFlags are shared by every command that connects.
func dialFlags() []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "client config `FILE` (default ~/.config/seqknock/client.toml; under sudo, read as the invoking user)"},
		&cli.StringFlag{Name: "key-file", Usage: "key `FILE` (overrides the config)"},
	}, append(serverFlags("overrides the config; "), []cli.Flag{
		&cli.DurationFlag{Name: "syn-timeout", Value: client.DefaultSynTimeout, Usage: "wait this long for a knock's SYN-ACK"},
		&cli.IntFlag{Name: "attempts", Value: client.DefaultAttempts, Usage: "knocks to send, each on a slot of its own, before giving up (each spends a slot of the period)"},
		&cli.DurationFlag{Name: "timeout", Usage: "give up the whole connect after this long (default: when the attempts are spent)"},
		&cli.DurationFlag{Name: "clock-offset", Usage: "add this to the clock, to correct a known skew (e.g. -4s)"},
		&cli.BoolFlag{Name: "4", Usage: "IPv4 only"},
		&cli.BoolFlag{Name: "6", Usage: "IPv6 only"},
		&cli.BoolFlag{Name: "bind-source-port", Usage: "knock from the source port each knock reserves, as a server service with bind_source_port = true requires (overrides the config's bind_source_port; --bind-source-port=false turns it off)"},
		&cli.StringFlag{Name: "sign-key-file", Usage: "sign the connection with TCP-MD5 using the service's key `FILE` (as sign = \"tcp-md5\" with sign_key_file in the config; overrides it)"},
		&cli.StringFlag{Name: "alias", Usage: "the `NAME` given to ssh (its %n), looked up in the config before HOST"},
		&cli.StringFlag{Name: "broker", Usage: "the broker's socket `PATH`, asked when seqknock holds no CAP_NET_ADMIN (overrides the config; default " + broker.DefaultPath + ")"},
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "say on stderr which [[host]] matched and each knock tried (address, counter, slot, wait)"},
	}...)...)
}

// serverFlags are --realm, --period and --slots, how the server derives
// knocks: the connecting commands take them over the client config (what
// says so), isn over the defaults (client.Knock).
func serverFlags(what string) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "realm", Usage: "the server's `REALM` (" + what + "default empty)"},
		&cli.DurationFlag{Name: "period", Usage: "the server's counter period (" + what + "default 30s)"},
		&cli.IntFlag{Name: "slots", Usage: "the server's slots per period (" + what + "default 4)"},
	}
}

// serverFlagValues are the serverFlags and --bind-source-port, each only
// when given.
func serverFlagValues(c *cli.Context) client.Flags {
	return client.Flags{
		Realm:          given(c, "realm", c.String),
		Period:         given(c, "period", c.Duration),
		Slots:          given(c, "slots", c.Int),
		BindSourcePort: given(c, "bind-source-port", c.Bool),
	}
}

// given is flag name's value, or nil when it is not set.
func given[T any](c *cli.Context, name string, get func(string) T) *T {
	if !c.IsSet(name) {
		return nil
	}
	v := get(name)
	return &v
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
// user's config (client.Resolve: flags win). Messages go to stderr.
func dialer(c *cli.Context, stderr io.Writer, inv *client.Invoker, host string, port uint16) (*client.Dialer, error) {
	cfg, err := inv.LoadConfig(c.String("config"))
	if err != nil {
		return nil, err
	}
	f := serverFlagValues(c)
	f.Alias, f.KeyFile, f.SignKeyFile = c.String("alias"), c.String("key-file"), c.String("sign-key-file")
	f.IPv4, f.IPv6 = c.Bool("4"), c.Bool("6")
	f.SynTimeout, f.Timeout, f.ClockOffset = c.Duration("syn-timeout"), c.Duration("timeout"), c.Duration("clock-offset")
	if f.Attempts = c.Int("attempts"); f.Attempts < 1 {
		return nil, usagef("--attempts %d: want 1 or more", f.Attempts)
	}
	f.Broker = c.String("broker")
	if c.Bool("verbose") {
		// One line each, never on stdout, which carries the connection.
		f.Verbosef = func(format string, a ...any) { fmt.Fprintf(stderr, "seqknock: "+format+"\n", a...) }
	}
	d, err := client.Resolve(cfg, f, host, port)
	if err != nil {
		return nil, usageError(err)
	}
	store := inv.SlotStore()
	d.Reserve, d.Admitted, d.LastAdmitted = store.Reserve, store.Admit, store.LastAdmitted
	d.Warnf = func(format string, a ...any) { fmt.Fprintf(stderr, "seqknock: "+format+"\n", a...) }
	// Said whether verbose or not: it costs a slot.
	d.OnPortBusy = func(sport uint16, counter uint64, slot int) {
		fmt.Fprintf(stderr, "seqknock: source port %d (counter %d slot %d) is in use here; bind_source_port moves to the next slot\n", sport, counter, slot)
	}
	return d, nil
}

// usageError gives client's usage errors exit status 2.
func usageError(err error) error {
	if errors.As(err, new(client.UsageError)) {
		return cliconv.UsageError{Err: err}
	}
	return err
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
			conn, err := connect(c, c.String("user"), c.App.ErrWriter, host, port)
			if err != nil {
				alsoOnTerminal(c.App.ErrWriter, err)
				return err
			}
			defer conn.Close()
			return use(c, conn)
		},
	}
}

// alsoOnTerminal writes why a connect failed to the controlling terminal
// as well, when the error output is /dev/null: ssh sends a ProxyCommand's
// error output there when ControlPersist is set (as in the stanza
// ssh-config prints), which would leave the user with ssh's "connection
// closed" alone. Only for a connect's failure: a relay that runs in the
// background for minutes never writes to the terminal.
func alsoOnTerminal(stderr io.Writer, err error) {
	if f, ok := stderr.(*os.File); !ok || !isDevNull(f) {
		return
	}
	tty, terr := os.OpenFile("/dev/tty", os.O_WRONLY|syscall.O_NOCTTY, 0)
	if terr != nil {
		return
	}
	defer tty.Close()
	fmt.Fprintf(tty, "seqknock: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
}

// isDevNull reports whether f is /dev/null.
func isDevNull(f *os.File) bool {
	var st, null syscall.Stat_t
	if syscall.Fstat(int(f.Fd()), &st) != nil || syscall.Stat("/dev/null", &null) != nil {
		return false
	}
	return st.Mode&syscall.S_IFMT == syscall.S_IFCHR && st.Rdev == null.Rdev
}

// connect acts for the invoking user (actFor; user is root's --user),
// dials host:port with a knock and gives up every privilege. In the image
// a cgo build hands the socket to (client.HandOver), it takes that socket
// instead.
func connect(c *cli.Context, user string, stderr io.Writer, host string, port uint16) (*net.TCPConn, error) {
	inv, err := actFor(user, true)
	if err != nil {
		return nil, err
	}
	if conn, err := client.Handed(); conn != nil || err != nil {
		return conn, err
	}
	d, err := dialer(c, stderr, inv, host, port)
	if err != nil {
		return nil, err
	}
	// No signal handler: SIGINT, SIGTERM or SIGHUP during the dial ends
	// the process by that signal, as it would any ProxyCommand, and
	// nothing is left to undo (the kernel closes the socket and releases
	// the slot file's lock; a reserved slot stays spent). Catching them
	// (signal.NotifyContext) cost every start a thread of its own.
	conn, err := d.Dial(context.Background(), host, port)
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
// set-user-ID run, or for root's --user, user) it first becomes that user,
// keeping CAP_NET_ADMIN alone when netAdmin, and starts afresh as them
// (client.Become), so nothing is read or written with root's rights.
func actFor(user string, netAdmin bool) (*client.Invoker, error) {
	inv, err := client.CurrentInvoker()
	if err != nil {
		return nil, err
	}
	if inv, err = inv.ForUser(user); err != nil {
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
		covhook.Flush() // a coverage build's counters; nothing otherwise
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
		"For ~/.ssh/config: ProxyCommand seqknock proxy %h %p. Needs CAP_NET_ADMIN (setcap or sudo) or, without it, "+
			"the broker (seqknock broker) and membership of its group; "+
			"gives up every privilege once connected.",
		nil, noMoreArgs,
		func(c *cli.Context, conn *net.TCPConn) error {
			return client.Relay(conn, c.App.Reader, c.App.Writer)
		})
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
		UsageText: "seqknock ssh-config [--fdpass] [--sudo] [--broker PATH] [--config FILE | --key-file FILE] HOST",
		Description: "HOST, the name you give ssh, must match a [[host]] entry of the client config, or --key-file " +
			"must name the key (it then goes into the ProxyCommand). The ProxyCommand passes ssh's %n as --alias, " +
			"so a [[host]] may name the alias (Host prod) while ssh connects to its HostName. The stanza ends with " +
			"ControlMaster, ControlPath and ControlPersist lines (connection sharing; see CONNECTION SHARING in seqknock(1)); with --sudo, with the sudoers rule that sudo -n needs; without, with a comment " +
			"saying how seqknock will set the ISN (the broker, when this binary holds no CAP_NET_ADMIN).",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "fdpass", Usage: "use ProxyUseFdpass (ssh talks to the socket directly; no relay process stays)"},
			&cli.BoolFlag{Name: "sudo", Usage: "run seqknock with sudo -n (when the binary has no cap_net_admin file capability); needs a NOPASSWD sudoers rule, printed as a comment"},
			&cli.StringFlag{Name: "config", Usage: "client config `FILE` (default ~/.config/seqknock/client.toml)"},
			&cli.StringFlag{Name: "key-file", Usage: "key `FILE`, for a host with no [[host]] entry"},
			&cli.StringFlag{Name: "broker", Usage: "the broker's socket `PATH` (overrides the config; default " + broker.DefaultPath + ")"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("ssh-config: want HOST")
			}
			inv, err := actFor(c.String("user"), false)
			if err != nil {
				return err
			}
			cfg, err := inv.LoadConfig(c.String("config"))
			if err != nil {
				return err
			}
			self, err := os.Executable()
			if err != nil {
				self = "seqknock"
			}
			name, home := "USER", ""
			if u, err := user.Current(); err == nil {
				name, home = u.Username, u.HomeDir
			}
			stanza, err := client.SSHConfig(client.Stanza{
				Host:       c.Args().First(),
				Config:     cfg,
				ConfigFile: c.String("config"),
				KeyFile:    c.String("key-file"),
				Self:       self,
				User:       name,
				FDPass:     c.Bool("fdpass"),
				Sudo:       c.Bool("sudo"),
				Broker:     c.String("broker"),
				Note:       client.PrivilegeNote(client.BrokerPath(cfg, c.String("broker"))),
				Home:       home,
			})
			if err != nil {
				return usageError(err)
			}
			fmt.Fprint(c.App.Writer, stanza)
			return nil
		},
	}
}
