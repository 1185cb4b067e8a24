//go:build cgo

package client

const builtWithCgo = true
