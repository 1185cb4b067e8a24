//go:build linux

package strictfile

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/seqknock/seqknock/internal/netnstest"
)

// within fails t unless fn returns within a second: nothing here may block.
func within(t *testing.T, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Second):
		t.Fatal("blocked for a second")
		return nil
	}
}

// wantRefused fails t unless err is a refusal whose one line names want
// and gives a fix.
func wantRefused(t *testing.T, what string, err error, want string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: accepted", what)
	case !errors.Is(err, ErrRefused):
		t.Errorf("%s: %v, want a refusal", what, err)
	case !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n"):
		t.Errorf("%s: %q, want one line naming %q", what, err, want)
	}
}

// TestOpenRefusesWhatIsNotARegularFile: a FIFO (which would block an
// open for reading until a writer comes), a symlink and a directory are
// refused at once, by Open and OpenOwned alike; a regular file is read.
func TestOpenRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for name, open := range map[string]func(string) (*os.File, error){
		"Open": Open, "OpenNotWritableByOthers": OpenNotWritableByOthers,
		"OpenOwned": func(p string) (*os.File, error) { return OpenOwned(p, os.Geteuid()) },
	} {
		for _, c := range []struct{ path, want string }{
			{fifo, fifo + ": not a regular file"},
			{link, link + ": is a symlink"},
			{dir, "not a regular file"},
		} {
			err := within(t, func() error {
				f, err := open(c.path)
				if err == nil {
					f.Close()
				}
				return err
			})
			wantRefused(t, name+" "+c.path, err, c.want)
		}
		f, err := open(file)
		if err != nil {
			t.Errorf("%s of a regular file: %v", name, err)
			continue
		}
		f.Close()
	}
}

// TestOpenNotWritableByOthers: a config others can write is refused with
// its fix; group-writable is accepted.
func TestOpenNotWritableByOthers(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o666)
	_, err := OpenNotWritableByOthers(p)
	wantRefused(t, "0666 config", err, p+": writable by others (mode 0666); run: chmod o-w "+p)
	os.Chmod(p, 0o664)
	if f, err := OpenNotWritableByOthers(p); err != nil {
		t.Errorf("0664 config: %v", err)
	} else {
		f.Close()
	}
}

// TestOpenOwnedStrictModes: with a real unprivileged user, a key file or
// any directory above it that the user owns is refused (the user could
// swap the key), naming the file or directory and the fix; so is a
// directory writable by group or others that is not sticky. A sticky
// world-writable directory, as /tmp, is accepted above a directory or file
// of ours; a file another user made in it is not.
func TestOpenOwnedStrictModes(t *testing.T) {
	u := netnstest.NewUser(t)
	uid := os.Geteuid()
	key := []byte("k\n")

	// The user's own key file, in a directory of the user's.
	userKey := u.WriteFile("keys/alice.key", key, 0o600)
	_, err := OpenOwned(userKey, uid)
	wantRefused(t, "a key file the user owns", err, "directory "+filepath.Dir(filepath.Dir(userKey)))

	// A root key in the user's directory: the user may rename it away
	// and put its own in its place.
	rootKey := filepath.Join(filepath.Dir(userKey), "root.key")
	if err := os.WriteFile(rootKey, key, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = OpenOwned(rootKey, uid)
	wantRefused(t, "a root key in the user's directory", err, "is owned by uid "+itoa(u.UID)+", not root or uid 0; run: chown root ")

	// A key file the user owns, in root's directory (one the user can
	// reach, for the sticky directory below).
	dir, err := os.MkdirTemp("", "seqknock-strict-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	owned := filepath.Join(dir, "owned.key")
	if err := os.WriteFile(owned, key, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chown(owned, u.UID, u.GID)
	_, err = OpenOwned(owned, uid)
	wantRefused(t, "a key file the user owns in root's directory", err, owned+": owned by uid "+itoa(u.UID)+", not root or uid 0 (the daemon's user); run: chown root "+owned)
	// The daemon's user may own it: run as that user, it is accepted.
	if f, err := OpenOwned(owned, u.UID); err != nil {
		t.Errorf("as the owner's uid: %v", err)
	} else {
		f.Close()
	}

	// A directory others may write, not sticky: refused; sticky: accepted,
	// with a root key in it, as /tmp.
	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777)
	inOpen := filepath.Join(open, "k.key")
	if err := os.WriteFile(inOpen, key, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = OpenOwned(inOpen, uid)
	wantRefused(t, "a key in a 0777 directory", err, "directory "+open+" is writable by group or others and not sticky (mode 0777); run: chmod go-w "+open)
	os.Chmod(open, os.ModeSticky|0o777)
	if f, err := OpenOwned(inOpen, uid); err != nil {
		t.Errorf("a root key in a sticky 1777 directory: %v", err)
	} else {
		f.Close()
	}
	// The user can create a name in the sticky directory, but what it
	// makes is its own, and refused.
	squat := filepath.Join(open, "squat.key")
	mk := u.Command(nil, "sh", "-c", "umask 077; echo k > "+squat)
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("the user writing %s: %v: %s", squat, err, out)
	}
	_, err = OpenOwned(squat, uid)
	wantRefused(t, "a key the user made in a sticky directory", err, squat+": owned by uid "+itoa(u.UID))

	// A group-writable key file of root's.
	gw := filepath.Join(dir, "gw.key")
	if err := os.WriteFile(gw, key, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chmod(gw, 0o620)
	_, err = OpenOwned(gw, uid)
	wantRefused(t, "a group-writable key", err, gw+": writable by group or others (mode 0620); run: chmod go-w "+gw)
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestDirsReuse: Dirs walks a directory once for all its files, refuses a
// file below a directory a real unprivileged user owns as OpenOwned does,
// and keeps refusing it (a refusal is not remembered as a pass).
func TestDirsReuse(t *testing.T) {
	u := netnstest.NewUser(t)
	dir := t.TempDir()
	for _, n := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("k"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	bad := u.WriteFile("sub/k", []byte("k"), 0o600)
	os.Chown(bad, 0, 0)
	d := NewDirs(os.Geteuid())
	defer d.Close()
	kept := 0
	for i := range 2 {
		for _, n := range []string{"a", "b"} {
			f, err := d.OpenOwned(filepath.Join(dir, n))
			if err != nil {
				t.Fatalf("round %d, %s: %v", i, n, err)
			}
			f.Close()
		}
		_, err := d.OpenOwned(bad)
		wantRefused(t, "below the user's directory", err, "directory "+u.Home+" is owned by uid "+strconv.Itoa(u.UID))
		if i == 0 {
			kept = len(d.fds)
		} else if len(d.fds) != kept {
			t.Errorf("the second round walked again: %d directories kept, then %d", kept, len(d.fds))
		}
	}
	if _, ok := d.fds[dir]; !ok {
		t.Errorf("%s not kept", dir)
	}
	if _, ok := d.fds[u.Home]; ok {
		t.Errorf("the refused %s kept as checked", u.Home)
	}
}

// TestOpenDir: OpenDir refuses a directory below one a real unprivileged
// user owns (the user could rename it and put another in its place),
// naming that directory and the fix, before it makes anything; refuses a
// symlink in the directory's place; makes missing directories 0700 on
// the way down; and its descriptor stays on the directory it checked
// after the name is swapped for a symlink to another.
func TestOpenDir(t *testing.T) {
	u := netnstest.NewUser(t)
	uid := os.Geteuid()
	under := filepath.Join(u.Home, "state", "deeper")
	_, err := OpenDir(under, uid, true, nil)
	wantRefused(t, "a directory below the user's home", err, "directory "+u.Home+" is owned by uid "+itoa(u.UID)+", not root or uid 0; run: chown root "+u.Home)
	if _, err := os.Lstat(filepath.Join(u.Home, "state")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused walk made a directory: %v", err)
	}

	root := t.TempDir()
	made := filepath.Join(root, "a", "b")
	d, err := OpenDir(made, uid, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(root, "a"), made} {
		if fi, err := os.Lstat(p); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v; want a directory made mode 0700", p, fi, err)
		}
	}
	// Swap the name for a symlink to another directory: the descriptor
	// still names the one checked, and the name is now refused.
	other := filepath.Join(root, "other")
	os.Mkdir(other, 0o700)
	if err := os.Rename(made, filepath.Join(root, "a", "old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(other, made); err != nil {
		t.Fatal(err)
	}
	fd, err := syscall.Openat(int(d.Fd()), "f", syscall.O_CREAT|syscall.O_WRONLY|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)
	d.Close()
	if _, err := os.Stat(filepath.Join(root, "a", "old", "f")); err != nil {
		t.Errorf("the file made through the descriptor is not in the directory checked: %v", err)
	}
	if _, err := os.Stat(filepath.Join(other, "f")); err == nil {
		t.Error("the file made through the descriptor followed the swapped name")
	}
	_, err = OpenDir(made, uid, false, nil)
	wantRefused(t, "a symlink in the directory's place", err, made+": is not a directory")
	// A missing directory without create is not made, and not found.
	if _, err := OpenDir(filepath.Join(root, "none"), uid, false, nil); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing directory without create: %v, want not found", err)
	}
}

// OpenOwned is Dirs.OpenOwned for one file.
func OpenOwned(path string, uid int) (*os.File, error) {
	d := NewDirs(uid)
	defer d.Close()
	return d.OpenOwned(path)
}
