package nftgen

import "encoding/binary"

// The set user data nft writes for "typeof tcp dport . tcp sequence".
//
// nft (src/mnl.c, src/expression.c, src/payload.c) stores a set's typeof
// expression as libnftnl TLVs: a one-byte type, a one-byte length, the value;
// integers in host byte order. The layout, from libnftnl's udata.h and
// nftables' sources:
//
//	SET_KEYBYTEORDER = 0 (BYTEORDER_INVALID: a concatenation)
//	SET_KEY_TYPEOF {
//	  TYPEOF_EXPR = EXPR_CONCAT
//	  TYPEOF_DATA {
//	    CONCAT_NEST+0 { SUB_TYPE = EXPR_PAYLOAD, SUB_DATA { PAYLOAD_DESC = tcp, PAYLOAD_TYPE = dport } }
//	    CONCAT_NEST+1 { SUB_TYPE = EXPR_PAYLOAD, SUB_DATA { PAYLOAD_DESC = tcp, PAYLOAD_TYPE = sequence, PAYLOAD_LEN = 32 } }
//	  }
//	}
//
// typeof_test.go checks the result byte for byte against the NEWSET message
// that `nft -f` sent on kernel 6.18 (captured with strace).
const (
	udataSetKeyByteorder = 0 // NFTNL_UDATA_SET_KEYBYTEORDER
	udataSetKeyTypeof    = 3 // NFTNL_UDATA_SET_KEY_TYPEOF

	udataTypeofExpr = 0 // NFTNL_UDATA_SET_TYPEOF_EXPR
	udataTypeofData = 1 // NFTNL_UDATA_SET_TYPEOF_DATA

	udataConcatNest    = 0 // NFTNL_UDATA_SET_KEY_CONCAT_NEST (+ index)
	udataConcatSubType = 0 // NFTNL_UDATA_SET_KEY_CONCAT_SUB_TYPE
	udataConcatSubData = 1 // NFTNL_UDATA_SET_KEY_CONCAT_SUB_DATA

	udataPayloadDesc = 0 // NFTNL_UDATA_SET_KEY_PAYLOAD_DESC
	udataPayloadType = 1 // NFTNL_UDATA_SET_KEY_PAYLOAD_TYPE
	udataPayloadLen  = 4 // NFTNL_UDATA_SET_KEY_PAYLOAD_LEN

	exprPayload = 7  // EXPR_PAYLOAD in nftables' enum expr_types
	exprConcat  = 13 // EXPR_CONCAT

	protoDescTCP = 8 // PROTO_DESC_TCP in nftables' enum proto_desc_id
	tcpHdrSport  = 1 // TCPHDR_SPORT in enum tcp_hdr_fields
	tcpHdrDport  = 2 // TCPHDR_DPORT
	tcpHdrSeq    = 3 // TCPHDR_SEQ
)

func tlv(typ byte, value []byte) []byte {
	if len(value) > 255 {
		panic("nftgen: udata TLV longer than 255 bytes")
	}
	return append([]byte{typ, byte(len(value))}, value...)
}

func tlvU32(typ byte, v uint32) []byte {
	return tlv(typ, binary.NativeEndian.AppendUint32(nil, v))
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// tcpPayloadUdata describes one "tcp FIELD" payload expression; bitLen is 0
// where nft leaves the length out.
func tcpPayloadUdata(field uint32, bitLen uint32) []byte {
	d := cat(tlvU32(udataPayloadDesc, protoDescTCP), tlvU32(udataPayloadType, field))
	if bitLen != 0 {
		d = append(d, tlvU32(udataPayloadLen, bitLen)...)
	}
	return d
}

// dportSeqUserData returns the NFTA_SET_USERDATA nft writes for a set of
// "typeof tcp dport . tcp sequence".
func dportSeqUserData() []byte { return concatUserData(false) }

// concatUserData is that of "typeof tcp dport . tcp sequence", or with
// sport of "typeof tcp sport . tcp dport . tcp sequence".
func concatUserData(sport bool) []byte {
	field := func(typ, bitLen uint32) []byte {
		return cat(tlvU32(udataConcatSubType, exprPayload), tlv(udataConcatSubData, tcpPayloadUdata(typ, bitLen)))
	}
	fields := [][]byte{field(tcpHdrDport, 0), field(tcpHdrSeq, 32)}
	if sport {
		fields = append([][]byte{field(tcpHdrSport, 0)}, fields...)
	}
	var data []byte
	for i, f := range fields {
		data = append(data, tlv(udataConcatNest+byte(i), f)...)
	}
	typeof := cat(tlvU32(udataTypeofExpr, exprConcat), tlv(udataTypeofData, data))
	return cat(tlvU32(udataSetKeyByteorder, 0), tlv(udataSetKeyTypeof, typeof))
}
