package pxe

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// inNetns runs f on an OS thread that is inside the network namespace at
// path (e.g. /run/netns/prov), so that the sockets f opens belong to it;
// sockets keep their namespace for life, whichever thread uses them later.
// An empty path runs f in the caller's namespace.
func inNetns(path string, f func() error) error {
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

// lockThreadInNetns moves the calling goroutine's thread into the namespace
// at path until the returned function is called (deferred by the caller),
// which moves it back and unlocks it. Used by servers that open sockets
// per transfer (TFTP). The thread must not die with the goroutine: child
// processes started with Pdeathsig from that thread (QEMU, dnsmasq) would
// be killed with it.
func lockThreadInNetns(path string) (func(), error) {
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
