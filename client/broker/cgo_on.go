//go:build cgo

package broker

const builtWithCgo = true
