// Package nsnet opens sockets inside a network namespace: a socket keeps
// the namespace it was created in for life, whichever thread uses it
// later, so a process in one namespace can serve or call another (the
// boot service on a provisioning network, rackcloud dialing the daemons
// of hosts on it).
package nsnet

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs f on an OS thread that is inside the network namespace at
// path (e.g. /run/netns/prov), so that the sockets f opens belong to it;
// sockets keep their namespace for life, whichever thread uses them later.
// An empty path runs f in the caller's namespace.
func Do(path string, f func() error) error {
	if path == "" {
		return f()
	}
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: %w", err)
	}
	defer orig.Close()
	if err := setns(path); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread is stuck in the other namespace: leave it locked so
		// that it dies with this goroutine instead of serving others.
		return fmt.Errorf("netns: restore: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// LockThread moves the calling goroutine's thread into the namespace
// at path until the returned function is called (deferred by the caller),
// which moves it back and unlocks it. Used by servers that open sockets
// per transfer (TFTP). The thread must not die with the goroutine: child
// processes started with Pdeathsig from that thread (QEMU, dnsmasq) would
// be killed with it.
func LockThread(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("netns: %w", err)
	}
	if err := setns(path); err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		return nil, err
	}
	return func() {
		defer orig.Close()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			return // stuck in the other namespace: let the thread end
		}
		runtime.UnlockOSThread()
	}, nil
}

func setns(path string) error {
	ns, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	defer ns.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("netns %s: setns: %w", path, err)
	}
	return nil
}

// Dialer returns a DialContext that opens its connections in the network
// namespace at path ("" dials in the caller's).
func Dialer(path string, d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	if path == "" {
		return d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := Do(path, func() error {
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}
