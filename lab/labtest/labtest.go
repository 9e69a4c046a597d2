// Package labtest holds test helpers shared by the packages whose tests
// run real parts of the lab: required binaries, a throwaway provisioning
// network, and dnsmasq as a real DHCP server on it. Every process it
// starts is stopped by its PID when the test ends.
package labtest

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rackcloud/rackcloud/lab/netns"
)

// Need fails the test when a binary is missing: lab/install.sh installs
// them all, so a missing one is a broken machine, not a reason to skip.
func Need(t testing.TB, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s is not installed (run lab/install.sh): %v", b, err)
		}
	}
}

var nsSeq atomic.Int32

// Net makes a network namespace named prefix<pid>-<n> whose bridge carries
// gateway (e.g. "10.77.0.1/24"), deleted when the test ends.
func Net(t testing.TB, prefix, gateway string) *netns.Net {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), nsSeq.Add(1))
	n, err := netns.New(ctx, name, netip.MustParsePrefix(gateway))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	})
	return n
}

// Dnsmasq runs dnsmasq as the DHCP server of n's bridge, leasing .100-.200
// of the bridge's /24, and returns its log file (--log-dhcp), where each
// client's DHCPDISCOVER shows up.
func Dnsmasq(t testing.TB, n *netns.Net) string {
	t.Helper()
	Need(t, "dnsmasq")
	dir := t.TempDir()
	logf := filepath.Join(dir, "dnsmasq.log")
	b := n.Gateway.Addr().As4()
	pool := fmt.Sprintf("%d.%d.%d.100,%d.%d.%d.200,1h", b[0], b[1], b[2], b[0], b[1], b[2])
	cmd := n.Command(context.Background(), "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--user=root",
		"--interface="+n.Bridge, "--bind-interfaces", "--port=0", "--leasefile-ro",
		"--dhcp-range="+pool, "--log-dhcp", "--log-facility="+logf,
		"--pid-file="+filepath.Join(dir, "pid"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("dnsmasq: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return logf
}

// Eventually polls check every interval until it reports done, and fails
// the test with check's last description of the state after timeout.
func Eventually(t testing.TB, timeout, interval time.Duration, what string, check func() (done bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, state := check()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, state)
		}
		time.Sleep(interval)
	}
}
