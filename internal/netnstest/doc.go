// Package netnstest builds throwaway test hosts as Linux network namespaces,
// joined by veth pairs, with addresses from 198.18.0.0/15 and 2001:db8::/32
// only. Everything a test makes is removed by t.Cleanup, also when the test
// fails. Tests that need it call RequireRoot first: without root they skip,
// except under CI=true, where they fail.
package netnstest
