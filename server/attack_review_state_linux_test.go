//go:build linux

package server

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// asDaemonUser makes the state and runtime directory walks trust uid's
// directories as the daemon's user's, until t ends.
func asDaemonUser(t *testing.T, uid int) {
	old := daemonUID
	daemonUID = func() int { return uid }
	t.Cleanup(func() { daemonUID = old })
}

// exchangeLoop, run as an unprivileged user, swaps argv[1] (root's state
// directory) and argv[2] (a symlink to the user's own directory) with
// renameat2(RENAME_EXCHANGE) in a loop: each name is always there, a
// directory of root's half the time. It prints "ready" and swaps until
// killed.
const exchangeLoop = `
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = sys.argv[1].encode(), sys.argv[2].encode()
AT_FDCWD, RENAME_EXCHANGE = -100, 2
print("ready", flush=True)
while True:
    if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
        print("renameat2:", os.strerror(ctypes.get_errno()), flush=True)
        sys.exit(1)
`

// TestReviewStateDirUnderUserParent: the careless admin puts the state
// (--state) in a directory of root's, mode 0700, whose parent an
// unprivileged user owns (a home, a shared data directory). The user can
// swap the state directory with a symlink to a directory of their own
// between the check and the open, and the daemon would read the user's
// state: one without the spent knocks, which a restart after a lost
// table then admits again. The parent is refused, naming it; and with
// that check set aside (the user taken for the daemon's), a check then a
// load in a loop against the swaps never reads the user's state, since
// the file is opened relative to the directory checked.
func TestReviewStateDirUnderUserParent(t *testing.T) {
	netnstest.RequireRoot(t, "python3")
	u, parent := userParent(t)
	path := filepath.Join(parent, "state", "seqknock.json")
	// A directory above the state that the user owns is refused outright,
	// naming it and the fix: whoever can rename entries there can swap
	// the state directory for another of root's (an old copy) too.
	if err := CheckStateDir(path); err == nil || !strings.Contains(err.Error(), "directory "+parent+" is owned by uid "+itoa(u.UID)) || !strings.Contains(err.Error(), "chown root "+parent) {
		t.Fatalf("a state directory under a user's directory: %v; want a refusal naming %s and the fix", err, parent)
	}
	// The swaps, against the walk and the descriptor-relative opens on
	// their own: the daemon trusts the user's directory as its own user's.
	asDaemonUser(t, u.UID)
	if err := CheckStateDir(path); err != nil {
		t.Fatal(err)
	}
	st := &State{Table: "seqknock"}
	until := time.Now().Add(time.Hour)
	for i := 0; i < 1000; i++ {
		st.Add(22, uint32(i), until)
	}
	if err := st.Save(path); err != nil {
		t.Fatal(err)
	}
	// The user's directory with a state without spent knocks, and the
	// symlink the loop swaps in.
	own := filepath.Join(parent, "own")
	for _, c := range [][]string{
		{"mkdir", own},
		{"sh", "-c", `printf '{"version":1,"table":"seqknock","high_unix_ms":0,"spent":[]}\n' > ` + own + "/seqknock.json"},
		{"ln", "-s", "own", filepath.Join(parent, "link")},
	} {
		if out, err := u.Command(nil, c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
	}
	if err := CheckStateDir(path); err != nil {
		t.Logf("refused before any swap: %v", err)
		return
	}
	cmd := startExchange(t, u, filepath.Join(parent, "state"), filepath.Join(parent, "link"))
	const tries = 2000
	checked, forged := 0, 0
	for i := 0; i < tries; i++ {
		// The daemon's start (Daemon.loadState): the check, then the load.
		if CheckStateDir(path) != nil {
			continue
		}
		checked++
		got, err := LoadState(path, "seqknock")
		if err == nil && got.Len() == 0 {
			forged++
		}
	}
	killGroup(cmd)
	t.Logf("of %d starts, %d passed the state directory's check, and %d of those then read the user's state (0 of 1000 spent knocks)", tries, checked, forged)
	if forged > 0 {
		t.Errorf("a state directory under a user's directory: the user's state was read %d times of %d", forged, tries)
	}
	if checked == tries {
		t.Error("the check never refused the swapped directory: the loop did not run")
	}
}

// TestReviewRuntimeDirUnderUserParent: the same for the single-daemon
// lock (--runtime-dir): a directory of root's, mode 0700, under a
// directory an unprivileged user owns. While the user swaps the directory
// with a symlink to one of their own, a LockTable that opened the lock
// file by its path after checking the directory could get a lock on a
// file of the user's directory: two daemons of one table in one
// namespace. The parent is refused, naming it; and with that check set
// aside, no second LockTable gets a lock while the first holds it.
func TestReviewRuntimeDirUnderUserParent(t *testing.T) {
	netnstest.RequireRoot(t, "python3")
	u, parent := userParent(t)
	dir := filepath.Join(parent, "run")
	// Refused outright, naming the user's directory and the fix.
	if _, err := LockTable(dir, "seqknock"); err == nil || !strings.Contains(err.Error(), "directory "+parent+" is owned by uid "+itoa(u.UID)) || !strings.Contains(err.Error(), "chown root "+parent) {
		t.Fatalf("a runtime directory under a user's directory: %v; want a refusal naming %s and the fix", err, parent)
	}
	// The swaps, against the walk and the descriptor-relative opens on
	// their own: the daemon trusts the user's directory as its own user's.
	asDaemonUser(t, u.UID)
	release, err := LockTable(dir, "seqknock")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	for _, c := range [][]string{{"mkdir", filepath.Join(parent, "own")}, {"ln", "-s", "own", filepath.Join(parent, "link")}} {
		if out, err := u.Command(nil, c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
	}
	cmd := startExchange(t, u, dir, filepath.Join(parent, "link"))
	const tries = 2000
	second := 0
	for i := 0; i < tries; i++ {
		if rel, err := LockTable(dir, "seqknock"); err == nil {
			second++
			rel()
		}
	}
	killGroup(cmd)
	t.Logf("of %d second daemons started while the first holds the lock, %d got a lock of their own", tries, second)
	if second > 0 {
		t.Errorf("a runtime directory under a user's directory: %d of %d second daemons got the lock", second, tries)
	}
}

// userParent makes an unprivileged user and a directory of theirs, parent,
// under a temporary directory everyone may enter.
func userParent(t *testing.T) (*netnstest.User, string) {
	t.Helper()
	u := netnstest.NewUser(t)
	tmp := t.TempDir()
	os.Chmod(tmp, 0o755)
	os.Chmod(filepath.Dir(tmp), 0o755)
	parent := filepath.Join(tmp, "shared")
	os.Mkdir(parent, 0o755)
	os.Chown(parent, u.UID, u.GID)
	return u, parent
}

// startExchange starts exchangeLoop as u, swapping a and b, and returns
// once it runs; the caller ends it with killGroup.
func startExchange(t *testing.T, u *netnstest.User, a, b string) *exec.Cmd {
	t.Helper()
	cmd := u.Command(nil, "python3", "-c", exchangeLoop, a, b)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	startGroup(t, cmd)
	if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("user's loop: %q, %v", line, err)
	}
	return cmd
}
