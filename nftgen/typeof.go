package nftgen

import (
	"encoding/binary"

	"github.com/google/nftables/userdata"
)

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

// appendU32 appends a TLV of an integer, in host byte order as nft
// writes it.
func appendU32(b []byte, typ userdata.Type, v uint32) []byte {
	return userdata.Append(b, typ, binary.NativeEndian.AppendUint32(nil, v))
}

// concatUserData returns the NFTA_SET_USERDATA nft writes for a set of
// "typeof tcp dport . tcp sequence", or with sport of "typeof tcp sport .
// tcp dport . tcp sequence".
func concatUserData(sport bool) []byte {
	var fields []uint32
	if sport {
		fields = append(fields, tcpHdrSport)
	}
	var data []byte
	for i, field := range append(fields, tcpHdrDport, tcpHdrSeq) {
		// A "tcp FIELD" payload expression; nft gives the length of the
		// sequence number alone.
		p := appendU32(appendU32(nil, udataPayloadDesc, protoDescTCP), udataPayloadType, field)
		if field == tcpHdrSeq {
			p = appendU32(p, udataPayloadLen, 32)
		}
		sub := userdata.Append(appendU32(nil, udataConcatSubType, exprPayload), udataConcatSubData, p)
		data = userdata.Append(data, udataConcatNest+userdata.Type(i), sub)
	}
	typeof := userdata.Append(appendU32(nil, udataTypeofExpr, exprConcat), udataTypeofData, data)
	return userdata.Append(appendU32(nil, userdata.NFTNL_UDATA_SET_KEYBYTEORDER, 0), userdata.NFTNL_UDATA_SET_KEY_TYPEOF, typeof)
}
