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
// at path for good: the goroutine must never return the thread (the runtime
// ends a thread still locked when its goroutine exits). Used by servers that
// open sockets per transfer (TFTP).
func lockThreadInNetns(path string) error {
	if path == "" {
		return nil
	}
	runtime.LockOSThread()
	return setns(path)
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
