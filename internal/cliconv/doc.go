// Package cliconv holds the command-line conventions both seqknock binaries
// follow, on top of github.com/urfave/cli/v2:
//
//   - --version prints the module version and VCS revision from the build
//     info;
//   - a mistake in how a command is called (unknown command or flag, missing
//     operand) is one line on stderr and exit status 2; any other error is one
//     line and exit status 1;
//   - app-level flags are accepted after the command as well as before it
//     (seqknockd check-config -c FILE);
//   - help shows each flag once with a placeholder naming what it takes
//     (--period DURATION) and a default only when there is one worth saying.
package cliconv
