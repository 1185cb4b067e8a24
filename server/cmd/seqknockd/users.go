package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/seqknock/seqknock/server"
)

// printDaemon writes status's line about the daemon, when it was probed.
func printDaemon(w io.Writer, st *server.Status) {
	if st.Daemon != nil {
		fmt.Fprintf(w, "daemon:         %s\n", st.Daemon.Text())
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// daemonInfo reads the info file the table's daemon writes (empty when
// there is none: no daemon ran since boot).
func daemonInfo(c *cli.Context, table string) (*server.DaemonInfo, error) {
	path, err := server.InfoPath(c.String("runtime-dir"), table)
	if err != nil {
		return nil, err
	}
	return server.ReadInfo(path)
}

func usersCommand(runtimeDir cli.Flag) *cli.Command {
	return &cli.Command{
		Name:  "users",
		Usage: "list the users: ports, key fingerprints, expiry, last admitted knock and its source",
		Description: "The fingerprints are those `seqknock fingerprint` shows on the client for the same key. " +
			"The last admitted knock is what `seqknockd run` recorded in its info file (in --runtime-dir, " +
			"kept until reboot).",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}, runtimeDir},
		Action: withConfig(func(c *cli.Context, cfg *server.Config) error {
			info, err := daemonInfo(c, cfg.Table)
			if err != nil {
				return err
			}
			now := time.Now()
			users := server.Users(cfg, info, now)
			if c.Bool("json") {
				return printJSON(c.App.Writer, users)
			}
			server.WriteUsers(c.App.Writer, users, now)
			return nil
		}),
	}
}

func admissionsCommand(runtimeDir cli.Flag) *cli.Command {
	return &cli.Command{
		Name:  "admissions",
		Usage: "list the recent admitted knocks (user, source, destination) and whether each connection is still open",
		Description: fmt.Sprintf("Reads the last %d admissions `seqknockd run` recorded in its info file (in "+
			"--runtime-dir) and the connected sockets of the protected ports (sock_diag), to mark the "+
			"admitted connections still open. --open lists those alone.", server.MaxRecentAdmissions),
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}, runtimeDir,
			&cli.BoolFlag{Name: "open", Usage: "list only the admitted connections still open"}},
		Action: withConfig(func(c *cli.Context, cfg *server.Config) error {
			info, err := daemonInfo(c, cfg.Table)
			if err != nil {
				return err
			}
			var open []server.SessionTuple
			ports := make([]uint16, len(cfg.Services))
			for i, s := range cfg.Services {
				ports[i] = s.Port
			}
			ss, err := server.NewKernel(0).Sessions.Established(ports)
			if err != nil {
				return fmt.Errorf("admissions: %w", err)
			}
			for _, s := range ss {
				open = append(open, server.SessionTuple{Src: s.Src, Dst: s.Dst})
			}
			as := server.Admissions(info, open)
			if c.Bool("json") {
				if c.Bool("open") {
					as = slices.DeleteFunc(as, func(a server.AdmissionReport) bool { return !a.Open })
				}
				return printJSON(c.App.Writer, as)
			}
			server.WriteAdmissions(c.App.Writer, as, c.Bool("open"))
			return nil
		}),
	}
}
