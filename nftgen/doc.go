// Package nftgen turns a desired seqknock state into the nftables table of
// DESIGN.md ("The ruleset"), applies it in one netlink transaction, renders
// the same ruleset as nft text, and reads the live state back.
//
// The builders (Table, Sets, InputRules, KnockRules, Elements, Render) are
// pure: they take a State and a time and return google/nftables objects or
// text, and are tested without root. Applying (Apply, Teardown) and reading
// (Read) live in _linux.go files and talk to the kernel.
//
// # Why nftgen sends the batch itself
//
// google/nftables v0.3.0 writes no "typeof" user data for a set. Without it
// `nft list ruleset` shows our concatenated sets as "type 0" and an element
// as "2222 . 0", and the listing does not load back with `nft -f`.
// Administrators read and save rulesets with nft, so the table must list as
// nft itself would have written it.
//
// The smallest contained fix found: google/nftables still builds every
// message. Apply gives it a recording connection (nftables.WithTestDial), so
// Flush hands over the finished batch instead of sending it; nftgen then
// replaces the NFTA_SET_USERDATA attribute of the two concatenated sets'
// NEWSET messages with the bytes nft writes for
// "typeof tcp dport . tcp sequence" (typeof.go, built from named TLV fields
// and checked against a capture of nft's own message), and sends the batch
// with mdlayher/netlink. It is still one transaction: the kernel applies the
// whole batch or none of it. Nothing else in the messages is touched, and no
// fork of google/nftables is needed; when upstream learns to write typeof
// data, typeof.go and the patch step go away.
//
// The batch socket gets a send buffer large enough for the whole batch
// (SO_SNDBUFFORCE, as nft does): a cold sync of 240,000 elements is one
// ~10 MB message train, and the kernel processes a batch only when all of it
// arrives in one sendmsg.
package nftgen
