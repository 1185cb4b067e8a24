package nftgen

import (
	"bytes"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// patchSetUserData gives the NEWSET messages of the concatenated sets the
// typeof user data nft writes, in place. See the package documentation.
func patchSetUserData(msgs []netlink.Message) ([]netlink.Message, error) {
	newset := netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWSET)
	for i, m := range msgs {
		if m.Header.Type != newset || len(m.Data) < 4 {
			continue
		}
		attrs, err := netlink.UnmarshalAttributes(m.Data[4:])
		if err != nil {
			return nil, fmt.Errorf("patch set message: %w", err)
		}
		var name string
		for _, a := range attrs {
			if a.Type == unix.NFTA_SET_NAME {
				name = string(bytes.TrimRight(a.Data, "\x00"))
			}
		}
		x, _ := ourSet(name)
		var udata []byte
		switch x.typ {
		case "typeof " + dportSeqKeyText:
			udata = concatUserData(false)
		case "typeof " + sportKeyText:
			udata = concatUserData(true)
		default:
			continue
		}
		kept := attrs[:0]
		for _, a := range attrs {
			if a.Type != unix.NFTA_SET_USERDATA {
				kept = append(kept, a)
			}
		}
		kept = append(kept, netlink.Attribute{Type: unix.NFTA_SET_USERDATA, Data: udata})
		b, err := netlink.MarshalAttributes(kept)
		if err != nil {
			return nil, fmt.Errorf("patch set message: %w", err)
		}
		data := append(append([]byte(nil), m.Data[:4]...), b...)
		msgs[i] = netlink.Message{Header: m.Header, Data: data}
	}
	return msgs, nil
}
