package pxe

import "github.com/rackcloud/rackcloud/nsnet"

// inNetns runs f with its sockets in the namespace at path (nsnet.Do).
func inNetns(path string, f func() error) error { return nsnet.Do(path, f) }

// lockThreadInNetns keeps the caller's thread in the namespace at path
// until the returned function is called (nsnet.LockThread).
func lockThreadInNetns(path string) (func(), error) { return nsnet.LockThread(path) }
