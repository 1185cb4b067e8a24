// Command brokerask asks the seqknock broker at PATH to set the ISN of a
// fresh unconnected TCP socket of its own, as the user it runs as, for the
// broker's tests. It prints the broker's answer ("ok" or the error) and
// exits 0 on "ok", 1 otherwise. With "note", it prints the line
// seqknock ssh-config would print on how the ISN will be set
// (client.PrivilegeNote), with its advice when the broker refuses.
//
//	brokerask PATH [ISN | note]
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/seqknock/seqknock/client"
	"github.com/seqknock/seqknock/client/broker"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: brokerask PATH [ISN]")
		os.Exit(2)
	}
	if len(os.Args) > 2 && os.Args[2] == "note" {
		fmt.Println(client.PrivilegeNote(os.Args[1]))
		return
	}
	isn := uint64(12345)
	if len(os.Args) > 2 {
		isn, _ = strconv.ParseUint(os.Args[2], 10, 32)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	b := &broker.Client{Path: os.Args[1]}
	if err := b.Check(); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	if err := b.SetISNFrom(fd, uint32(isn), 0); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("ok")
}
