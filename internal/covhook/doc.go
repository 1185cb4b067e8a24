// Package covhook lets the coverage builds of seqknock and seqknockd that
// the tests make (scripts/cover.sh sets SEQKNOCK_COVERDIR; netnstest.Build
// then builds with -cover and the build tag seqknockcover) record what the
// binaries run, also where the tests run them with a scrubbed environment
// (sudo, client.Become) and where a process ends by execve or by a signal,
// which run no exit hook.
//
// In every other build the package is empty: Flush does nothing and
// nothing is read from or written to the environment.
package covhook
