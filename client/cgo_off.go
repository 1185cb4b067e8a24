//go:build !cgo

package client

const builtWithCgo = false
