//go:build linux

package strictfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Open opens path for reading without following a symlink at its last
// component and without blocking, and refuses it unless it is a regular
// file.
func Open(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, openError(path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	if _, err := regular(f, path); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// OpenNotWritableByOthers is Open that also refuses a file others (not
// its owner, not its group) may write: the config and the files it
// includes.
func OpenNotWritableByOthers(path string) (*os.File, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&0o002 != 0 {
		f.Close()
		return nil, refuse(path, fmt.Sprintf("writable by others (mode %04o); run: chmod o-w %s", st.Mode&0o7777, path))
	}
	return f, nil
}

// OpenOwned opens path as Open does, after checking every directory above
// it and the file itself as OpenSSH's StrictModes does: each must be owned
// by root or by uid (the daemon's user), and neither group nor others may
// write it. A directory that group or others may write is accepted only
// when it is sticky (mode +t, as /tmp): there, others may add names of
// their own but cannot remove or rename ours, and the next step of the
// walk checks that the name it takes is ours. The directories are first
// resolved (symlinks above the file are allowed, as in /var/run); the walk
// then opens each relative to the one above without following a symlink,
// so a directory swapped for a symlink after the check is refused, not
// followed.
func OpenOwned(path string, uid int) (*os.File, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	dir, base := filepath.Split(abs)
	if base == "" {
		return nil, refuse(path, "not a file")
	}
	dir, err = filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/", Err: err}
	}
	cur := "/"
	if err := checkDir(fd, cur, path, uid); err != nil {
		unix.Close(fd)
		return nil, err
	}
	for _, name := range strings.Split(strings.Trim(dir, "/"), "/") {
		if name == "" {
			continue
		}
		next, err := unix.Openat(fd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		cur = filepath.Join(cur, name)
		if err != nil {
			return nil, openError(cur, err)
		}
		fd = next
		if err := checkDir(fd, cur, path, uid); err != nil {
			unix.Close(fd)
			return nil, err
		}
	}
	ffd, err := unix.Openat(fd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	unix.Close(fd)
	if err != nil {
		return nil, openError(path, err)
	}
	f := os.NewFile(uintptr(ffd), path)
	st, err := regular(f, path)
	if err == nil {
		err = checkOwner(st, path, uid, "chown root "+path)
	}
	if err == nil && st.Mode&0o022 != 0 {
		err = refuse(path, fmt.Sprintf("writable by group or others (mode %04o); run: chmod go-w %s", st.Mode&0o7777, path))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkDir checks the directory open at fd, named name, above file.
func checkDir(fd int, name, file string, uid int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: name, Err: err}
	}
	if st.Uid != 0 && int(st.Uid) != uid {
		return refuse(file, fmt.Sprintf("directory %s is owned by uid %d, not root or uid %d; run: chown root %s", name, st.Uid, uid, name))
	}
	if st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
		return refuse(file, fmt.Sprintf("directory %s is writable by group or others and not sticky (mode %04o); run: chmod go-w %s", name, st.Mode&0o7777, name))
	}
	return nil
}

func checkOwner(st *unix.Stat_t, name string, uid int, fix string) error {
	if st.Uid == 0 || int(st.Uid) == uid {
		return nil
	}
	return refuse(name, fmt.Sprintf("owned by uid %d, not root or uid %d (the daemon's user); run: %s", st.Uid, uid, fix))
}

// regular fstats f and refuses it unless it is a regular file.
func regular(f *os.File, path string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, refuse(path, "not a regular file (a FIFO, socket, device or directory); name a regular file")
	}
	return &st, nil
}

// ErrRefused is wrapped by every refusal of a file this package makes.
var ErrRefused = errors.New("refused")

type refusal struct {
	path, why string
}

func (r *refusal) Error() string { return r.path + ": " + r.why }
func (r *refusal) Unwrap() error { return ErrRefused }

func refuse(path, why string) error { return &refusal{path, why} }

// openError names path; a symlink at the last component gets its fix.
func openError(path string, err error) error {
	if errors.Is(err, unix.ELOOP) {
		return refuse(path, "is a symlink, which is not followed; name the file it points to")
	}
	return &os.PathError{Op: "open", Path: path, Err: err}
}
