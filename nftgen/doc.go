// Package nftgen turns a desired seqknock state into the nftables table of
// docs/design.md ("The ruleset"), applies it in one netlink transaction, renders
// the same ruleset as nft text, and reads the live state back.
//
// The builders (the table's shape, the rule list, the elements, Render) are
// pure: they take a State and a time and return google/nftables objects or
// text, and are tested without root. Applying (Apply, Teardown) and reading
// (Read) live in _linux.go files and talk to the kernel.
//
// # Where things are
//
//   - state.go: State (the desired table) and its validation.
//   - params.go: Rules, the parameters of the chains' rules; limit.go:
//     Limit, a packet rate, and its parsing.
//   - rules.go: the one list of rule descriptions from which the rule
//     expressions and the rules' nft text are derived; expr.go: the
//     expression helpers it uses; fingerprint.go: the fingerprint stored in
//     every rule, Rules spelled out. A rule changes in rules.go and nowhere
//     else.
//   - shape.go: the table's chains and sets, declared once; Apply, Render
//     and the foreign-table check (foreign.go) all work from them. A chain
//     or set is added there.
//   - build.go: the set elements.
//   - render.go: the nft text of the whole table.
//   - batch.go: the transaction Apply sends, built without a kernel;
//     testdata/batch.golden holds a readable rendering of it
//     (batch_test.go; `go test ./nftgen -run TestBatchGolden -update`
//     rewrites it after an intended change).
//   - typeof.go, patch.go: the set user data nft writes, and patching it
//     into the batch.
//   - live.go: what Read reports and what Apply did (Live, Counter, Result).
//   - read_linux.go, apply_linux.go, send_linux.go: Conn, which reads the
//     table, applies a batch and tears it down, and sends the batch over
//     raw netlink.
//   - watch_linux.go, quiet_linux.go: Watch, which reports foreign changes,
//     and the large batches sent while the watch is out of the
//     notification group (the kernel would otherwise announce every
//     element: 8x the cold sync's kernel time), with the generation id
//     covering the gap.
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
// The valid set's elements (State.Valid, or State.Knocks as they are
// derived) are encoded by batchwriter.go straight into the bytes sendmsg
// takes, 32 bytes each and byte for byte what SetAddElements would build
// (the golden batch and TestValidElementsAsNftables show it), so a large
// config's elements are never held as objects. A sent batch's full-size
// segments, up to 4 MiB, are kept for the next batch to write into, so a
// rotation every period reuses memory instead of faulting in fresh pages. The batch socket gets a send buffer large enough for the whole
// batch (SO_SNDBUFFORCE, as nft does): a cold sync of 240,000 elements is
// one 7.7 MB message train, and the kernel processes a batch only when all
// of it arrives in one sendmsg (its segments are the iovecs), so the batch's
// bytes are the one thing held whole.
//
// AddValid is the rotation: it adds knocks to the valid set without
// flushing it, after checking that the table is otherwise what the state
// describes (ErrStale if not). The check reads the table, unless the
// namespace's generation id shows that nothing has committed since the
// Conn's own last Apply or AddValid of a state of the same shape.
//
// 48-bit knocks (Rules.SourcePort, an Element with SPort set) live in their
// own sets, valid_sp and used_sp, keyed by "tcp sport . tcp dport . tcp
// sequence" (typeof user data likewise patched in); they exist only while
// the rules use them, and are written through google/nftables (only the
// services that bind the source port make them, and a rotation adds them
// as it adds valid's). The fingerprint records "sport", so turning the
// mode on or off rebuilds the rules and makes a rotation stale.
package nftgen
