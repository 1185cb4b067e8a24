// Package strictfile opens the files seqknockd trusts (its config, the
// files the config includes, the key files, its state and runtime
// directories) the way OpenSSH's StrictModes checks them, and without
// ever blocking or following a symlink:
//
//   - a file is opened with O_NOFOLLOW|O_NONBLOCK and checked with fstat
//     on the descriptor it reads from (never checked, then opened): a
//     symlink, FIFO, socket or device is refused, so a FIFO cannot hang
//     the daemon's loop;
//   - OpenOwned also walks every directory from / down to the file, each
//     opened relative to the one above without following a symlink, and
//     refuses one that is not owned by root or the given user, or that
//     group or others may write unless it is sticky (see OpenOwned); the
//     file itself must be owned by root or that user and not writable by
//     group or others;
//   - OpenDir walks to a directory the same way (the state and runtime
//     directories), making missing ones 0700 when asked, and returns its
//     descriptor, so the files in it are used relative to the directory
//     checked (openat, renameat, unlinkat), never by a name that may have
//     been swapped since.
//
// Every refusal is one line naming the file and the command that fixes it.
package strictfile
