package server

import "net"

// IsLoopback exposes isLoopback to the tests.
func IsLoopback(a net.Addr) bool { return isLoopback(a) }
