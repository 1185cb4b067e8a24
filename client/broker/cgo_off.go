//go:build !cgo

package broker

const builtWithCgo = false
