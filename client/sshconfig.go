package client

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/seqknock/seqknock/client/broker"
	"github.com/seqknock/seqknock/totp/keyfile"
)

// Stanza says what goes into a ~/.ssh/config stanza for a host.
type Stanza struct {
	// Host is the name given to ssh; it must match a [[host]] of Config
	// unless KeyFile is set.
	Host   string
	Config *Config
	// ConfigFile and KeyFile, when set, go into the ProxyCommand (as
	// absolute paths: ssh runs it from wherever it was started).
	ConfigFile string
	KeyFile    string
	// Self is the seqknock binary; User the user who will run it.
	Self string
	User string
	// FDPass uses ProxyUseFdpass; Sudo runs seqknock with sudo -n.
	FDPass bool
	Sudo   bool
	// Broker, when set and not broker.DefaultPath, goes into the
	// ProxyCommand as --broker.
	Broker string
	// Note is a comment on how seqknock will set the ISN (PrivilegeNote).
	Note string
	// Home is the home directory ssh will expand ~ to (the user's entry
	// in the user database), to check the ControlPath's length; "" skips
	// the check.
	Home string
}

// controlPaths are the ControlPath the stanza sets, the first that fits:
// under ~/.ssh, which ssh makes mode 0700 and the user owns, so no one
// else can reach the shared connection. %C is 40 hex digits.
var controlPaths = []string{"~/.ssh/seqknock-%C", "~/.ssh/sk-%C"}

// maxControlPath is the longest ControlPath ssh can listen on: a Unix
// socket path holds at most 107 bytes, and the master first listens on
// the path with "." and 16 random characters added.
const maxControlPath = 107 - 17

// controlPath returns the first of controlPaths that fits with home, or
// "" when none does.
func controlPath(home string) string {
	for _, p := range controlPaths {
		expanded := len(home) + len(p) - len("~") - len("%C") + 40
		if home == "" || expanded <= maxControlPath {
			return p
		}
	}
	return ""
}

// SSHConfig returns the ~/.ssh/config stanza that connects to s.Host
// through seqknock. The ProxyCommand passes ssh's %n as --alias, so a
// [[host]] may name the alias while ssh connects to its HostName. A host
// that no [[host]] matches, without a KeyFile, is a UsageError; a KeyFile
// must be a usable key.
func SSHConfig(s Stanza) (string, error) {
	// A [[host]] for s.Host on whatever port.
	if s.KeyFile == "" && !slices.ContainsFunc(s.Config.Hosts, func(e HostEntry) bool { return e.matches(s.Host) }) {
		err := s.Config.NoHost(s.Host, "give --key-file")
		return "", usagef("ssh-config: %w", err)
	}
	cmd := s.Self
	if s.Sudo {
		cmd = "sudo -n " + cmd
	}
	verb := "proxy"
	if s.FDPass {
		verb = "fdpass"
	}
	cmd += " " + verb
	if s.ConfigFile != "" {
		cmd += " --config " + absPath(s.ConfigFile)
	}
	if s.Broker != "" && s.Broker != broker.DefaultPath {
		cmd += " --broker " + absPath(s.Broker)
	}
	if s.KeyFile != "" {
		if _, err := keyfile.Load(s.KeyFile); err != nil {
			return "", fmt.Errorf("ssh-config: %w", err)
		}
		cmd += " --key-file " + absPath(s.KeyFile)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Host %s\n    ProxyCommand %s --alias %%n %%h %%p\n", s.Host, cmd)
	if s.FDPass {
		fmt.Fprintf(&b, "    ProxyUseFdpass yes\n")
	}
	// A knock is spent by its first SYN; seqknock itself tries the other
	// slots, so ssh makes one attempt.
	fmt.Fprintf(&b, "    ConnectionAttempts 1\n")
	if s.Note != "" && !s.Sudo {
		fmt.Fprintf(&b, "    # %s\n", s.Note)
	}
	// Connection sharing: each connection spends a knock, and a server
	// allows a few per period, so repeated runs share one.
	if cp := controlPath(s.Home); cp != "" {
		if fi, err := os.Stat(filepath.Join(s.Home, ".ssh")); s.Home != "" && (err != nil || !fi.IsDir()) {
			// ssh gives up, rather than share nothing, when it cannot
			// make the socket; it makes ~/.ssh only when run without -F.
			fmt.Fprintf(&b, "    # %s does not exist: make it (mkdir -m 700 ~/.ssh), or ssh fails to start a shared connection.\n",
				filepath.Join(s.Home, ".ssh"))
		}
		fmt.Fprintf(&b, "    # Each connection spends a knock and a server allows a few per period (4 by default),\n"+
			"    # so ssh, scp and Ansible runs share one connection, kept 10 minutes after the last\n"+
			"    # ends (ssh -O exit %s ends it; see CONNECTION SHARING in seqknock(1)).\n"+
			"    ControlMaster auto\n    ControlPath %s\n    ControlPersist 10m\n", s.Host, cp)
	} else {
		fmt.Fprintf(&b, "    # Connection sharing is off: a ControlPath under %s would be longer than a Unix\n"+
			"    # socket path may be (%d characters); each connection spends one of the few knocks of a\n"+
			"    # period. Set ControlMaster auto, ControlPersist 10m and a ControlPath of at most %d\n"+
			"    # characters in a directory only you can write (see CONNECTION SHARING in seqknock(1)).\n",
			s.Home, maxControlPath, maxControlPath)
	}
	if s.Sudo {
		fmt.Fprintf(&b, "    # sudo -n asks no password, so it needs this rule (sudo visudo -f /etc/sudoers.d/seqknock)\n"+
			"    #   %%seqknock ALL=(root) NOPASSWD: %s\n"+
			"    # and you in group seqknock (sudo usermod -aG seqknock %s); see UNDER SUDO in seqknock(1).\n", s.Self, s.User)
	}
	return b.String(), nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
