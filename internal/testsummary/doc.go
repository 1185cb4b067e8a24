// Command testsummary reads `go test -json` on its standard input and
// prints what plain `go test` prints: each package's result line, and the
// output of each test that failed, with build errors and panics. It
// appends one line per skipped test, with the reason the test gave, to
// the file -skips names, and exits 1 if a test, a package or a build
// failed. scripts/test.sh runs every test stage through it.
package main
