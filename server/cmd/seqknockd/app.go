package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/seqknock/seqknock/internal/cliconv"
	"github.com/seqknock/seqknock/internal/keygencmd"
	"github.com/seqknock/seqknock/nftgen"
	"github.com/seqknock/seqknock/server"
	"github.com/urfave/cli/v2"
)

// statusNotCurrent is the exit status of `status` when the table is not
// what the config wants: 3, systemd's "not running" of LSB status actions.
const statusNotCurrent = 3

// unitDirs are where check-config looks for the timer unit.
var unitDirs = server.UnitDirs

// setMemoryLimit sizes the runtime's soft memory limit for cfg (see
// server.MemoryLimit), unless GOMEMLIMIT is set.
func setMemoryLimit(cfg *server.Config) {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(server.MemoryLimit(cfg, time.Now()))
	}
}

func noArgs(c *cli.Context) error {
	if c.NArg() > 0 {
		return cliconv.Usagef("%s: unexpected argument %q", c.Command.Name, c.Args().First())
	}
	return nil
}

// configPath is --config, given before or after the command.
func configPath(c *cli.Context) string { return cliconv.AppString(c, "config") }

// withConfig is the action of a command that takes no arguments and works
// from the loaded config.
func withConfig(fn func(c *cli.Context, cfg *server.Config) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		if err := noArgs(c); err != nil {
			return err
		}
		cfg, err := server.LoadConfig(configPath(c))
		if err != nil {
			return err
		}
		return fn(c, cfg)
	}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	configFlag := &cli.StringFlag{
		Name: "config", Aliases: []string{"c"}, Value: server.DefaultConfigPath,
		Usage: "config `FILE`", EnvVars: []string{"SEQKNOCKD_CONFIG"},
	}
	runtimeDirFlag := &cli.StringFlag{Name: "runtime-dir", Value: server.DefaultRuntimeDir, EnvVars: []string{"SEQKNOCKD_RUNTIME_DIR"},
		Usage: "the `DIR` where `seqknockd run` keeps its lock and info file"}
	stateFlag := &cli.StringFlag{
		Name: "state", EnvVars: []string{"SEQKNOCKD_STATE"},
		Usage: "state `FILE`: spent knocks and the highest time synced, kept across table removals, teardowns and restarts " +
			"(default: TABLE.json in --state-dir, TABLE@NETNS.json outside the host's network namespace; \"" + server.NoState + "\": keep none)",
	}
	stateDirFlag := &cli.StringFlag{
		Name: "state-dir", Value: server.DefaultStateDir, EnvVars: []string{"SEQKNOCKD_STATE_DIR"},
		Usage: "`DIR` of the default state file: root's, mode 0700, every directory above root's and not group- or other-writable (refused otherwise)",
	}
	app := &cli.App{
		Name:  "seqknockd",
		Usage: "admit a TCP SYN to a protected port only when its sequence number is a valid knock",
		Description: "seqknockd derives the ISNs valid in each period from per-user keys (ISN-v1) and keeps them " +
			"in the nftables table inet seqknock, where the kernel checks every SYN to a protected port. " +
			"Run `seqknockd run` as a service, or `seqknockd sync` from a timer at every period boundary.",
		Writer:    stdout,
		ErrWriter: stderr,
		Flags:     []cli.Flag{configFlag},
		Commands: []*cli.Command{
			{
				Name:  "sync",
				Flags: []cli.Flag{stateFlag, stateDirFlag},
				Usage: "make the table hold the current window's knocks, once (for a systemd timer)",
				Description: "One idempotent pass: the table, sets and rules match the config and the " +
					"valid set holds exactly the current window, less the knocks already spent (the used set's and " +
					"the state file's), which stay in the used set. One transaction: on error nothing changes. " +
					"Then each listener of a protected port gets the socket filter that drops a SYN the table did not mark " +
					"(it stays on the socket after seqknockd exits), and the listeners of signed services (sign = \"tcp-md5\") " +
					"get their key where they lack it.",
				Action: withConfig(func(c *cli.Context, cfg *server.Config) error {
					path, err := statePath(c, cfg.Table)
					if err != nil {
						return err
					}
					now := time.Now()
					log := server.NewLogger(c.App.ErrWriter)
					st := server.LoadVetted(path, cfg, now, log)
					if st.High.After(now) {
						now = st.High // the clock went back: never install an older window
					}
					k := server.NewKernel(0)
					res, err := server.SyncKeeping(k, cfg, now, &st.Spent)
					if err != nil {
						return err
					}
					st.High = now
					if err := st.Save(path); err != nil {
						return err
					}
					log.Info("sync", "table", cfg.Table, "elements", res.Elements,
						"created", res.Created, "rules_rebuilt", res.RulesRebuilt)
					// The filters stay on the listeners after this
					// process exits; one out of reach is a warning.
					server.LockOnce(k, cfg, log)
					return server.SignOnce(k, cfg, log)
				}),
			},
			{
				Name:  "run",
				Usage: "keep the table in force until stopped: sync at every period boundary, repair it at once when anyone else changes it (SIGHUP reloads, SIGTERM stops)",
				Flags: []cli.Flag{
					stateFlag, stateDirFlag,
					&cli.BoolFlag{Name: "teardown-on-exit", Usage: "remove the table on exit (default: leave it; knocks expire by themselves)"},
					&cli.BoolFlag{Name: "audit", Value: true,
						Usage: "log each admitted connection (user, port, source, counter, slot) and summaries of drops; --audit=false turns it off"},
					&cli.StringFlag{Name: "metrics-listen", EnvVars: []string{"SEQKNOCKD_METRICS_LISTEN"},
						Usage: "serve Prometheus metrics over HTTP on `ADDR`, a loopback address and port (127.0.0.1:9810)"},
					&cli.StringFlag{Name: "metrics-textfile", EnvVars: []string{"SEQKNOCKD_METRICS_TEXTFILE"},
						Usage: "write the metrics to `FILE` for node_exporter's textfile collector, at every sync and every 10s"},
					&cli.StringFlag{Name: "runtime-dir", Value: server.DefaultRuntimeDir, EnvVars: []string{"SEQKNOCKD_RUNTIME_DIR"},
						Usage: "keep in `DIR` (created 0700; it and every directory above root's, not group- or other-writable) the lock that makes this the only `seqknockd run` of its table in its network namespace"},
				},
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
					defer stop()
					hup := make(chan os.Signal, 1)
					signal.Notify(hup, syscall.SIGHUP)
					log := server.NewLogger(c.App.ErrWriter)
					d := &server.Daemon{
						ConfigPath:      configPath(c),
						Load:            server.LoadConfig,
						Kernel:          server.NewKernel(0),
						Now:             time.Now,
						Log:             log,
						TeardownOnExit:  c.Bool("teardown-on-exit"),
						StatePath:       c.String("state"),
						StateDir:        c.String("state-dir"),
						Notify:          server.SdNotify,
						Watchdog:        server.WatchdogTimeout(),
						MetricsTextfile: c.String("metrics-textfile"),
						OnConfig:        setMemoryLimit,
					}
					runtimeDir := c.String("runtime-dir")
					d.Lock = func(table string) (func(), error) { return server.LockTable(runtimeDir, table) }
					d.InfoFile = func(table string) (string, error) { return server.InfoPath(runtimeDir, table) }
					if c.Bool("audit") {
						d.Audit = &server.Auditor{Log: log}
						d.NearMiss = &server.NearMiss{Log: log}
					}
					if d.MetricsTextfile != "" || c.String("metrics-listen") != "" {
						d.Metrics = &server.Metrics{}
					}
					if addr := c.String("metrics-listen"); addr != "" {
						ln, err := listenLoopback(addr)
						if err != nil {
							return err
						}
						srv := &http.Server{Handler: d.Metrics.Handler(time.Now), ReadHeaderTimeout: 5 * time.Second}
						go srv.Serve(ln)
						defer srv.Close()
					}
					return d.Run(ctx, hup)
				},
			},
			{
				Name:  "status",
				Usage: "show the live table: ports, users, element counts, packet counters, next rotation",
				Description: "Exits 0 when the table is current: installed, with the rules, ports and users of the " +
					"config, and every listener of a protected port locked (the socket filter that drops a SYN the table did not mark). Exits 3 (as systemctl status does for a unit not running) when it is not, and says " +
					"what differs; --json carries the same in \"current\" and \"differences\". Also exits 3 when " +
					"no `seqknockd run` holds the table's lock (\"no seqknockd is keeping the table in force\"; " +
					"\"daemon\" in --json), unless --no-daemon (the timer form).",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}, runtimeDirFlag,
					&cli.BoolFlag{Name: "no-daemon", Usage: "do not require a running `seqknockd run` (for the timer form)"}},
				Action: withConfig(func(c *cli.Context, cfg *server.Config) error {
					now := time.Now()
					st, err := server.GetStatus(server.NewKernel(0), cfg, now)
					if err != nil {
						return err
					}
					ds, _, err := server.ProbeDaemon(c.String("runtime-dir"), cfg.Table, now)
					if err != nil {
						return err
					}
					st.Daemon = &ds
					if c.Bool("json") {
						if err := printJSON(c.App.Writer, st); err != nil {
							return err
						}
					} else {
						printStatus(c.App.Writer, st)
					}
					if !st.Current {
						return cli.Exit("table inet "+st.Table+" is not current: "+strings.Join(st.Differences, "; "), statusNotCurrent)
					}
					if !ds.Running && !c.Bool("no-daemon") {
						return cli.Exit("table inet "+st.Table+": "+server.NoDaemon+" (start it: systemctl start seqknockd)", statusNotCurrent)
					}
					return nil
				}),
			},
			{
				Name:  "ruleset",
				Usage: "print the nft ruleset a sync would install (valid elements summarised); changes nothing",
				Description: "Reads the config but not the key files, so it needs no root. The element count " +
					"is that of the config; the values themselves come from the keys at sync time.",
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					cfg, err := server.LoadConfigWithoutKeys(configPath(c))
					if err != nil {
						return err
					}
					now := time.Now()
					fmt.Fprint(c.App.Writer, nftgen.Render(server.Desired(cfg, now), now))
					return nil
				},
			},
			{
				Name:  "teardown",
				Usage: "remove the table and the lock on the protected ports' listeners (and nothing else); refused while a `seqknockd run` keeps it in force",
				Flags: []cli.Flag{stateFlag, stateDirFlag, &cli.StringFlag{Name: "table", Usage: "remove table `NAME` instead of the config's (works without a config; then the listeners keep their lock until the service restarts)"},
					runtimeDirFlag, &cli.BoolFlag{Name: "force", Usage: "remove the table even while a `seqknockd run` keeps it in force (it puts it back at once)"}},
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					table := c.String("table")
					var cfg *server.Config
					if table == "" {
						var err error
						if cfg, err = server.LoadConfig(configPath(c)); err != nil {
							return fmt.Errorf("%w (or name the table with --table)", err)
						}
						table = cfg.Table
					}
					if ds, _, err := server.ProbeDaemon(c.String("runtime-dir"), table, time.Now()); err != nil {
						return err
					} else if ds.Running && !c.Bool("force") {
						who := fmt.Sprintf("pid %d", ds.Pid)
						if ds.Pid == 0 {
							who = "starting"
						}
						return cli.Exit(fmt.Sprintf("seqknockd run (%s) keeps table inet %s in force and would put it back at once: stop it first (systemctl stop seqknockd), or pass --force", who, table), 1)
					}
					// The used set goes with the table: keep its spent
					// knocks in the state file, for the next sync.
					k := server.NewKernel(0)
					path, err := statePath(c, table)
					if err != nil {
						return err
					}
					st, err := server.LoadState(path, table)
					if err != nil && !errors.Is(err, fs.ErrNotExist) {
						return err
					}
					live, err := k.Table.Spent(table, time.Now())
					if err != nil {
						return err
					}
					st.Merge(live)
					if err := st.Save(path); err != nil {
						return err
					}
					removed, err := k.Table.Teardown(table)
					if err != nil {
						return err
					}
					if removed {
						fmt.Fprintf(c.App.Writer, "removed table inet %s\n", table)
					} else {
						fmt.Fprintf(c.App.Writer, "no table inet %s\n", table)
					}
					// Without the table, a locked listener admits nobody.
					if cfg != nil {
						if n := server.UnlockOnce(k, cfg, server.NewLogger(c.App.ErrWriter)); n > 0 {
							fmt.Fprintf(c.App.Writer, "unlocked %d listeners\n", n)
						}
					}
					return nil
				},
			},
			{
				Name:  "check-config",
				Usage: "check the config and its key files, print the odds against guessing, list whether each protected port's listeners are locked, and check that the timer unit fires at every period boundary; changes nothing",
				Action: withConfig(func(c *cli.Context, cfg *server.Config) error {
					fmt.Fprintf(c.App.Writer, "%s: ok: %d users, %d services, period %v, tolerance %d, %d slots, table %s\n",
						cfg.Path, len(cfg.Users), len(cfg.Services), cfg.Period, cfg.Tolerance, cfg.Slots, cfg.Table)
					for _, f := range cfg.Files {
						fmt.Fprintf(c.App.Writer, "included: %s\n", f)
					}
					for _, k := range server.ExpiredKeys(cfg, time.Now()) {
						fmt.Fprintf(c.App.Writer, "expired (no longer knocks; remove it): %s\n", k)
					}
					printOdds(c.App.Writer, c.App.ErrWriter, cfg, time.Now())
					if err := printLocks(c.App.Writer, c.App.ErrWriter, cfg); err != nil {
						return err
					}
					w, err := server.TimerWarning(unitDirs, cfg.Period)
					if err != nil {
						return err
					}
					if w != "" {
						fmt.Fprintf(c.App.ErrWriter, "seqknockd: warning: %s\n", w)
					}
					return nil
				}),
			},
			usersCommand(runtimeDirFlag),
			admissionsCommand(runtimeDirFlag),
			keygenCommand(),
		},
	}
	cliconv.Prepare(app)
	return app
}

// statePath is the state file the command uses for table: --state, or
// the default one in --state-dir.
func statePath(c *cli.Context, table string) (string, error) {
	return server.StatePath(c.String("state"), c.String("state-dir"), table)
}

// printOdds writes each port's odds against random guessing, and warns
// where a random SYN's chance is above server.OddsWarnAbove.
func printOdds(w, ew io.Writer, cfg *server.Config, now time.Time) {
	fmt.Fprintf(w, "guess limit: %s per source (/%d, /%d); global cap %s; lookups for locked-out sources %s\n",
		limitText(cfg.Guess.String()), cfg.GuessPrefix4, cfg.GuessPrefix6, limitText(cfg.GuessGlobal.String()),
		limitText(cfg.LockoutLookup.String()))
	one, many := server.GuessRate(cfg, 1), server.GuessRate(cfg, server.ManySources)
	fmt.Fprintf(w, "guesses looked up: %.0f a second from one source, %.0f from %d sources\n", one, many, server.ManySources)
	for _, o := range server.PortOdds(cfg, now) {
		fmt.Fprintf(w, "port %d: %d valid %d-bit knocks: odds per random SYN %.2g; a 50%% chance takes %.3g SYNs: %s from one source, %s from %d\n",
			o.Port, o.Valid, o.Bits, o.PerSYN, o.SYNs50,
			server.Humanize(o.SYNs50/one), server.Humanize(o.SYNs50/many), server.ManySources)
		if o.PerSYN > server.OddsWarnAbove {
			fmt.Fprintf(ew, "seqknockd: warning: port %d: odds per random SYN %.2g are above %.0e: lower slots, tolerance or lookahead, split the users across ports, or set bind_source_port\n",
				o.Port, o.PerSYN, server.OddsWarnAbove)
		}
	}
}

// printLocks writes whether each listener of a protected port is locked,
// and warns for each that is not.
func printLocks(w, ew io.Writer, cfg *server.Config) error {
	ls, err := server.LockedListeners(server.NewKernel(0), cfg)
	if err != nil {
		return err
	}
	for _, l := range ls {
		switch {
		case l.Address == "":
			fmt.Fprintf(w, "port %d: %s\n", l.Port, l.Reason)
		case l.Locked:
			fmt.Fprintf(w, "port %d: listener %s locked\n", l.Port, l.Address)
		case l.Reason == server.OtherNetns:
			fmt.Fprintf(w, "port %d: listener %s: %s\n", l.Port, l.Address, l.Reason)
		default:
			fmt.Fprintf(w, "port %d: listener %s NOT locked: %s\n", l.Port, l.Address, l.Reason)
			fmt.Fprintf(ew, "seqknockd: warning: port %d: listener %s is not locked (%s): only the table protects it\n", l.Port, l.Address, l.Reason)
		}
	}
	return nil
}

// keygenCommand is how an administrator makes users' keys under
// /etc/seqknock (the client's keygen refuses to run under sudo).
func keygenCommand() *cli.Command {
	c := keygencmd.Command("seqknockd", nil)
	c.Usage = "generate a user's key (32 random bytes, one base64 line)"
	c.Description += " This is how an administrator makes users' keys: sudo seqknockd keygen -o /etc/seqknock/alice.key."
	return c
}

func printStatus(w io.Writer, st *server.Status) {
	if !st.Present {
		fmt.Fprintf(w, "table inet %s: not installed (run `seqknockd sync`)\n", st.Table)
		printDaemon(w, st)
		printListenerLocks(w, st)
		return
	}
	ports := make([]string, len(st.Ports))
	for i, p := range st.Ports {
		ports[i] = fmt.Sprint(p)
	}
	state := "current"
	if !st.Current {
		state = "NOT current (the next sync rewrites it)"
		if st.Daemon != nil && !st.Daemon.Running {
			state = "NOT current, and no daemon to rewrite it"
		}
	}
	fmt.Fprintf(w, "table:          inet %s (%s)\n", st.Table, state)
	printDaemon(w, st)
	for _, d := range st.Differences {
		fmt.Fprintf(w, "differs:        %s\n", d)
	}
	for i, p := range st.Ports {
		mode := st.Modes[fmt.Sprint(p)]
		if slices.Contains(st.Bound, p) {
			mode += ", 48-bit knocks"
		}
		ports[i] += " (" + mode + ")"
	}
	fmt.Fprintf(w, "ports:          %s\n", strings.Join(ports, ", "))
	fmt.Fprintf(w, "users:          %s\n", strings.Join(st.Users, ", "))
	fmt.Fprintf(w, "valid knocks:   %d\n", st.Valid)
	fmt.Fprintf(w, "used knocks:    %d\n", st.Used)
	fmt.Fprintf(w, "admitted:       %d packets\n", st.Admitted.Packets)
	fmt.Fprintf(w, "dropped:        %d packets\n", st.Dropped.Packets)
	fmt.Fprintf(w, "reset:          %d packets\n", st.Rejected.Packets)
	unk := make([]string, len(st.Ports))
	for i, p := range st.Ports {
		unk[i] = fmt.Sprintf("%d: %d", p, st.Unknocked[fmt.Sprint(p)].Packets)
	}
	fmt.Fprintf(w, "unknocked:      %s packets\n", strings.Join(unk, ", "))
	fmt.Fprintf(w, "guess limit:    %s per source (%s), global %s, locked-out lookups %s\n",
		limitText(st.GuessLimit), st.GuessPrefix, limitText(st.GlobalLimit), limitText(st.LookupLimit))
	fmt.Fprintf(w, "locked out:     %d sources now; %d SYNs dropped\n", st.LockedOut, st.Lockout.Packets)
	fmt.Fprintf(w, "counter:        %d (next rotation in %.1fs)\n", st.Counter, st.NextRotationS)
	for _, l := range st.SignedListeners {
		state := "signed"
		if !l.Signed {
			state = "NOT signed"
		}
		fmt.Fprintf(w, "listener:       %s port %d %s (%s)\n", l.Address, l.Port, state, l.Mode)
	}
	printListenerLocks(w, st)
}

// printListenerLocks writes whether each listener of a protected port is
// locked (the socket filter that drops a SYN the table did not mark).
func printListenerLocks(w io.Writer, st *server.Status) {
	for _, l := range st.Listeners {
		switch {
		case l.Address == "":
			fmt.Fprintf(w, "lock:           port %d: %s\n", l.Port, l.Reason)
		case l.Locked:
			fmt.Fprintf(w, "lock:           %s port %d locked\n", l.Address, l.Port)
		default:
			fmt.Fprintf(w, "lock:           %s port %d NOT locked: %s\n", l.Address, l.Port, l.Reason)
		}
	}
}

// limitText spells a status limit ("10/second+20", "0") for people.
func limitText(s string) string {
	if s == "0" {
		return "off"
	}
	rate, burst, _ := strings.Cut(s, "+")
	return rate + " (burst " + burst + ")"
}

// listenLoopback listens on addr, which must be a loopback address: the
// metrics name users and are for the host's own collector.
func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, cliconv.Usagef("--metrics-listen %q: %v", addr, err)
	}
	if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
		return nil, cliconv.Usagef("--metrics-listen %q: want a loopback address, like 127.0.0.1:9810 or [::1]:9810", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return ln, nil
}

// run runs the app: exit status 0 ok, 2 bad usage, 1 anything else, with
// the error on one line.
func run(args []string, stdout, stderr io.Writer) int {
	return cliconv.Run(newApp(stdout, stderr), args, stderr)
}
