package nftgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// segMax is the largest segment a batchWriter allocates (bigger only for
// one message that needs more): a batch of a million elements is a few
// dozen segments, well under the kernel's 1024 iovecs per sendmsg.
const segMax = 1 << 20

// batchWriter encodes a transaction's messages, in order, straight into
// the bytes sendmsg takes: segments, each holding whole messages, sent in
// one sendmsg (the kernel takes a batch only whole, in one message train).
// The valid set's elements are written there as they are derived (32
// bytes each, nothing else kept per element); google/nftables's messages
// arrive through record, as its Flush hands them over. Only the last
// message before BATCH_END asks for an acknowledgement: the kernel reports
// an error for any message that fails, and then applies none of the batch.
type batchWriter struct {
	segs    [][]byte
	cur     []byte
	segSize int
	last    []byte // header of the last message, for its ack flag
	err     error
	// bound holds the valid_sp elements validElements met: they go into
	// their own set, through google/nftables (few: only the services that
	// bind the source port make them).
	bound []nftables.SetElement
}

func newBatchWriter() *batchWriter {
	w := &batchWriter{segSize: 16 << 10}
	w.message(netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), netlink.Request, batchHeader)
	w.last = nil
	return w
}

// batchHeader is the nfgenmsg of BATCH_BEGIN and BATCH_END: AF_UNSPEC,
// version 0, res_id NFNL_SUBSYS_NFTABLES (big endian), as google/nftables
// and nft write it.
var batchHeader = []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, unix.NFNL_SUBSYS_NFTABLES}

// ensure makes room for n more bytes in the current segment.
func (w *batchWriter) ensure(n int) {
	if cap(w.cur)-len(w.cur) >= n {
		return
	}
	if len(w.cur) > 0 {
		w.segs = append(w.segs, w.cur)
	}
	if n <= segMax {
		if seg := takeSegment(); seg != nil {
			w.cur = seg
			return
		}
	}
	w.cur = make([]byte, 0, max(n, w.segSize))
	w.segSize = min(2*w.segSize, segMax)
}

// spare keeps up to spareMax full-size segments of sent batches for the
// next batch to write into (release, takeSegment). A rotation each period
// then reuses memory it already has instead of megabytes that the runtime
// must zero and later collect and the kernel must fault in page by page
// (a rotation at 10,000 users is 2.5 MB). Their old contents are never
// sent: a writer appends from length 0.
var spare struct {
	sync.Mutex
	segs [][]byte
}

// spareMax bounds what spare holds: 4 MiB.
const spareMax = 4

// takeSegment returns an empty spare segment of capacity segMax, or nil.
func takeSegment() []byte {
	spare.Lock()
	defer spare.Unlock()
	n := len(spare.segs)
	if n == 0 {
		return nil
	}
	seg := spare.segs[n-1]
	spare.segs[n-1] = nil
	spare.segs = spare.segs[:n-1]
	return seg[:0]
}

// release gives b's full-size segments to spare, up to spareMax; b must
// not be used after.
func (b batch) release() {
	spare.Lock()
	defer spare.Unlock()
	for _, seg := range b.segs {
		if cap(seg) == segMax && len(spare.segs) < spareMax {
			spare.segs = append(spare.segs, seg)
		}
	}
}

// message appends one message. Its sequence number and port id are 0 (the
// kernel fills in the port id); the ack flag is cleared (see finish).
func (w *batchWriter) message(typ netlink.HeaderType, flags netlink.HeaderFlags, data []byte) {
	n := 16 + len(data)
	w.ensure(align4(n))
	at := len(w.cur)
	w.cur = appendHeader(w.cur, uint32(n), typ, flags&^netlink.Acknowledge)
	w.cur = append(w.cur, data...)
	w.cur = append(w.cur, make([]byte, align4(n)-n)...)
	w.last = w.cur[at : at+16]
}

func appendHeader(b []byte, length uint32, typ netlink.HeaderType, flags netlink.HeaderFlags) []byte {
	b = binary.NativeEndian.AppendUint32(b, length)
	b = binary.NativeEndian.AppendUint16(b, uint16(typ))
	b = binary.NativeEndian.AppendUint16(b, uint16(flags))
	return append(b, 0, 0, 0, 0, 0, 0, 0, 0) // sequence, port id
}

func align4(n int) int { return (n + 3) &^ 3 }

// appendAttr appends a netlink attribute, padded.
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	return append(b, make([]byte, align4(len(data))-len(data))...)
}

// record stands in for the netlink socket while google/nftables flushes:
// it writes each message of the batch, with the typeof user data patched
// in, and acknowledges everything. The batch begin and end of each Flush
// are left out: the writer has its own, around all of them.
func (w *batchWriter) record(req []netlink.Message) ([]netlink.Message, error) {
	if req == nil {
		return []netlink.Message{{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 4)}}, nil
	}
	msgs, err := patchSetUserData(req)
	if err != nil {
		w.err = err
		return nil, nil
	}
	for _, m := range msgs {
		if m.Header.Type == unix.NFNL_MSG_BATCH_BEGIN || m.Header.Type == unix.NFNL_MSG_BATCH_END {
			continue
		}
		w.message(m.Header.Type, m.Header.Flags, m.Data)
	}
	return nil, nil
}

// flush hands google/nftables's queued messages to the writer.
func (w *batchWriter) flush(nc *nftables.Conn) error {
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("build batch: %w", err)
	}
	return w.err
}

// validElements writes the valid set's elements from s at now (see
// State.eachValid), after what nc has queued, and returns their number;
// the valid_sp elements it keeps in w.bound (counted too).
// The messages are the ones google/nftables's SetAddElements builds for
// set (TestValidElementsAsNftables checks it byte for byte).
func (w *batchWriter) validElements(nc *nftables.Conn, set *nftables.Set, s State, now time.Time) (int, error) {
	if err := w.flush(nc); err != nil {
		return 0, err
	}
	name := []byte(set.Name + "\x00")
	table := []byte(set.Table.Name + "\x00")
	var id [4]byte
	binary.BigEndian.PutUint32(id[:], set.ID)
	maxLen := 16 + 4 + 4 + align4(len(name)) + 8 + 4 + align4(len(table)) + 4 + elementsPerMessage*32
	total, inMsg, hdr, list := 0, 0, 0, 0
	open := func() {
		w.ensure(maxLen)
		hdr = len(w.cur)
		w.cur = appendHeader(w.cur, 0, netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWSETELEM), netlink.Request|netlink.Create)
		w.cur = append(w.cur, byte(set.Table.Family), unix.NFNETLINK_V0, 0, 0)
		w.cur = appendAttr(w.cur, unix.NFTA_SET_ELEM_LIST_SET, name)
		w.cur = appendAttr(w.cur, unix.NFTA_SET_ELEM_LIST_SET_ID, id[:])
		w.cur = appendAttr(w.cur, unix.NFTA_SET_ELEM_LIST_TABLE, table)
		list = len(w.cur)
		w.cur = appendAttr(w.cur, unix.NFTA_SET_ELEM_LIST_ELEMENTS|unix.NLA_F_NESTED, nil)
	}
	closeMsg := func() {
		binary.NativeEndian.PutUint32(w.cur[hdr:], uint32(len(w.cur)-hdr))
		binary.NativeEndian.PutUint16(w.cur[list:], uint16(len(w.cur)-list))
		w.last = w.cur[hdr : hdr+16]
	}
	s.eachValid(now, func(sport, port uint16, isn uint32, ttl time.Duration) {
		if sport != 0 {
			w.bound = append(w.bound, nftables.SetElement{Key: elementKey(sport, port, isn), Timeout: ttl})
			total++
			return
		}
		if inMsg == 0 {
			open()
		}
		inMsg++
		w.cur = appendElement(w.cur, uint16(inMsg), port, isn, ttl)
		total++
		if inMsg == elementsPerMessage {
			closeMsg()
			inMsg = 0
		}
	})
	if inMsg > 0 {
		closeMsg()
	}
	return total, nil
}

// appendElement appends list element i of a "tcp dport . tcp sequence"
// set: its key and timeout, 32 bytes, elementTemplate with i, port, isn
// and the timeout written in (one append instead of ten: it runs for
// every knock).
func appendElement(b []byte, i uint16, port uint16, isn uint32, ttl time.Duration) []byte {
	b = append(b, elementTemplate[:]...)
	e := b[len(b)-32:]
	binary.NativeEndian.PutUint16(e[2:], i|unix.NLA_F_NESTED)
	binary.BigEndian.PutUint16(e[12:], port)
	binary.BigEndian.PutUint32(e[16:], isn)
	binary.BigEndian.PutUint64(e[24:], uint64(ttl.Milliseconds()))
	return b
}

// elementTemplate is a list element as appendElement writes it, with its
// index, port, isn and timeout zero: the element's nest (32 bytes), the
// key's nest (16) holding the value (12: port, 2 bytes of padding, isn),
// then the timeout (12: milliseconds).
var elementTemplate = func() (t [32]byte) {
	ne := binary.NativeEndian
	b := ne.AppendUint16(t[:0], 32)
	b = ne.AppendUint16(b, unix.NLA_F_NESTED)
	b = ne.AppendUint16(b, 16)
	b = ne.AppendUint16(b, unix.NFTA_SET_ELEM_KEY|unix.NLA_F_NESTED)
	b = ne.AppendUint16(b, 12)
	b = ne.AppendUint16(b, unix.NFTA_DATA_VALUE)
	b = appendDportSeq(b, 0, 0)
	b = ne.AppendUint16(b, 12)
	b = ne.AppendUint16(b, unix.NFTA_SET_ELEM_TIMEOUT)
	binary.BigEndian.AppendUint64(b, 0)
	return t
}()

// finish flushes what nc still holds, ends the batch and asks for the
// acknowledgement on its last message.
func (w *batchWriter) finish(nc *nftables.Conn, res Result) (batch, error) {
	if err := w.flush(nc); err != nil {
		return batch{}, err
	}
	last := w.last
	if last == nil {
		return batch{}, errors.New("build batch: empty batch")
	}
	binary.NativeEndian.PutUint16(last[6:], binary.NativeEndian.Uint16(last[6:])|uint16(netlink.Acknowledge))
	w.message(netlink.HeaderType(unix.NFNL_MSG_BATCH_END), netlink.Request, batchHeader)
	w.segs = append(w.segs, w.cur)
	w.cur = nil
	return batch{segs: w.segs, res: res}, nil
}

// size is the batch's length in bytes.
func (b batch) size() int {
	n := 0
	for _, s := range b.segs {
		n += len(s)
	}
	return n
}
