package nftgen

import (
	"encoding/hex"
	"testing"
)

// nftValidUserData is the NFTA_SET_USERDATA attribute that `nft -f` sent for
// "set valid { typeof tcp dport . tcp sequence; flags timeout; }" on kernel
// 6.18 with nftables 1.0.6, captured with `strace -x -e sendmsg`.
const nftValidUserData = "000400000000033a00040d00000001320014000407000000010c000408000000010402000000011a0004070000000112000408000000010403000000040420000000"

func TestDportSeqUserDataMatchesNft(t *testing.T) {
	got := hex.EncodeToString(concatUserData(false))
	if got != nftValidUserData {
		t.Fatalf("user data\n got %s\nwant %s", got, nftValidUserData)
	}
}
