//go:build linux

package strictfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// open opens name in the directory at dirfd (unix.AT_FDCWD: the
// working directory) for reading without following a symlink at its last
// component and without blocking, and refuses it unless it is a regular
// file; path names it in errors.
func open(dirfd int, name, path string) (*os.File, *unix.Stat_t, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, openError(path, err)
	}
	var st unix.Stat_t
	if err = unix.Fstat(fd, &st); err != nil {
		err = &os.PathError{Op: "stat", Path: path, Err: err}
	} else if st.Mode&unix.S_IFMT != unix.S_IFREG {
		err = refuse(path, "not a regular file (a FIFO, socket, device or directory); name a regular file")
	}
	if err != nil {
		unix.Close(fd)
		return nil, nil, err
	}
	return os.NewFile(uintptr(fd), path), &st, nil
}

// Open opens path for reading as open does: no symlink at its last
// component, no blocking, a regular file only.
func Open(path string) (*os.File, error) {
	f, _, err := open(unix.AT_FDCWD, path, path)
	return f, err
}

// OpenNotWritableByOthers opens path as open does, and also refuses a
// file others (not its owner, not its group) may write: the config and
// the files it includes.
func OpenNotWritableByOthers(path string) (*os.File, error) {
	f, st, err := open(unix.AT_FDCWD, path, path)
	if err != nil {
		return nil, err
	}
	if st.Mode&0o002 != 0 {
		f.Close()
		return nil, refuse(path, fmt.Sprintf("writable by others (mode %04o); run: chmod o-w %s", st.Mode&0o7777, path))
	}
	return f, nil
}

// Dirs opens files after checking the directories above them, each
// directory walked and checked once and its descriptor kept until Close,
// so the files of one directory (a config's thousands of key files) cost
// one open each.
type Dirs struct {
	uid    int
	create bool           // make missing directories (OpenDir)
	fds    map[string]int // checked directories, by resolved path
}

// NewDirs returns a Dirs checking ownership against uid.
func NewDirs(uid int) *Dirs { return &Dirs{uid: uid, fds: map[string]int{}} }

// Close closes the directories' descriptors.
func (d *Dirs) Close() {
	for _, fd := range d.fds {
		unix.Close(fd)
	}
	d.fds = map[string]int{}
}

// OpenOwned opens path as Open does, after checking every directory above
// it and the file itself as OpenSSH's StrictModes does: each must be owned
// by root or by d's uid (the daemon's user), and neither group nor others may
// write it. A directory that group or others may write is accepted only
// when it is sticky (mode +t, as /tmp): there, others may add names of
// their own but cannot remove or rename ours, and the next step of the
// walk checks that the name it takes is ours. The directories are first
// resolved (symlinks above the file are allowed, as in /var/run); the walk
// then opens each relative to the one above without following a symlink,
// so a directory swapped for a symlink after the check is refused, not
// followed.
func (d *Dirs) OpenOwned(path string) (*os.File, error) {
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
	fd, err := d.dir(dir, path)
	if err != nil {
		return nil, err
	}
	f, st, err := open(fd, base, path)
	switch {
	case err != nil:
		return nil, err
	case st.Uid != 0 && int(st.Uid) != d.uid:
		err = refuse(path, fmt.Sprintf("owned by uid %d, not root or uid %d (the daemon's user); run: chown root %s", st.Uid, d.uid, path))
	case st.Mode&0o022 != 0:
		err = refuse(path, fmt.Sprintf("writable by group or others (mode %04o); run: chmod go-w %s", st.Mode&0o7777, path))
	default:
		return f, nil
	}
	f.Close()
	return nil, err
}

// dir returns a descriptor of the resolved directory dir, walked from /
// and checked (for file, named in refusals), or the one walked before.
func (d *Dirs) dir(dir, file string) (int, error) {
	dir = filepath.Clean(dir)
	if fd, ok := d.fds[dir]; ok {
		return fd, nil
	}
	var fd int
	var err error
	if dir == "/" {
		fd, err = unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	} else {
		parent, perr := d.dir(filepath.Dir(dir), file)
		if perr != nil {
			return -1, perr
		}
		fd, err = unix.Openat(parent, filepath.Base(dir), unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && d.create {
			fd, err = d.openat(parent, filepath.Base(dir))
		}
	}
	if err != nil {
		return -1, openError(dir, err)
	}
	if err := checkDir(fd, dir, file, d.uid); err != nil {
		unix.Close(fd)
		return -1, err
	}
	d.fds[dir] = fd
	return fd, nil
}

// checkDir checks the directory open at fd, named name, above file.
func checkDir(fd int, name, file string, uid int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "stat", Path: name, Err: err}
	}
	return checkStat(&st, name, file, uid)
}

// checkStat is checkDir's rule on the directory name's fstat.
func checkStat(st *unix.Stat_t, name, file string, uid int) error {
	if st.Uid != 0 && int(st.Uid) != uid {
		return refuse(file, fmt.Sprintf("directory %s is owned by uid %d, not root or uid %d; run: chown root %s", name, st.Uid, uid, name))
	}
	if st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
		return refuse(file, fmt.Sprintf("directory %s is writable by group or others and not sticky (mode %04o); run: chmod go-w %s", name, st.Mode&0o7777, name))
	}
	return nil
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

// OpenDir opens the directory path for use as the base of *at calls
// (openat, renameat, unlinkat), after walking every directory above it as
// OpenOwned does: each opened relative to the one above without following
// a symlink, owned by root or uid, and not writable by group or others
// unless sticky. The directories above it are first resolved (symlinks
// there are allowed); path itself is opened without following a symlink,
// so a directory swapped for a symlink is refused, and the descriptor
// returned stays on the directory checked whatever later happens to its
// name. With create, missing directories are made mode 0700 on the way
// down, each relative to the one above. check vets path's own fstat (nil:
// the rule of the directories above); its error is returned as is.
func OpenDir(path string, uid int, create bool, check func(*unix.Stat_t) error) (*os.File, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	abs = filepath.Clean(abs)
	if abs == "/" {
		return nil, refuse(path, "is /; name a directory of its own")
	}
	parent, base := filepath.Split(abs)
	parent, err = resolveExisting(parent)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	d := NewDirs(uid)
	d.create = create
	defer d.Close()
	pfd, err := d.dir(parent, path)
	if err != nil {
		return nil, err
	}
	fd, err := d.openat(pfd, base)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
		return nil, refuse(path, "is not a directory (a symlink, which is not followed?); name a directory of root's")
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if check == nil {
		check = func(st *unix.Stat_t) error { return checkStat(st, path, path, uid) }
	}
	if err := check(&st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// openat opens the directory name in the directory at parent without
// following a symlink, first making it (mode 0700) when d creates missing
// directories. The descriptor can be read and fsynced, and is the base of
// *at calls.
func (d *Dirs) openat(parent int, name string) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(parent, name, flags, 0)
	if errors.Is(err, unix.ENOENT) && d.create {
		if err := unix.Mkdirat(parent, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, err
		}
		fd, err = unix.Openat(parent, name, flags, 0)
	}
	return fd, err
}

// resolveExisting resolves the symlinks of dir's longest existing prefix
// and appends the rest as it is: the directories a create walk will make.
func resolveExisting(dir string) (string, error) {
	dir = filepath.Clean(dir)
	r, err := filepath.EvalSymlinks(dir)
	if err == nil || !errors.Is(err, os.ErrNotExist) || dir == "/" {
		return r, err
	}
	up, err := resolveExisting(filepath.Dir(dir))
	if err != nil {
		return "", err
	}
	return filepath.Join(up, filepath.Base(dir)), nil
}
