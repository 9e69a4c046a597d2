package pxe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/lab/bootimg"
	"github.com/rackcloud/rackcloud/lab/netns"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/lab/qemu"
)

// The integration tests run real firmware (SeaBIOS with QEMU's iPXE ROM,
// OVMF) against the service inside a network namespace made per test.

var nsSeq atomic.Int32

// testLab is one namespace with a bridge, its own subnet and boot files.
type testLab struct {
	t      *testing.T
	net    *netns.Net
	prefix netip.Prefix
	server netip.Addr
	dir    string
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root (network namespaces, taps, raw sockets); CI runs make test as root")
	}
}

func requireBinaries(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Fatalf("%s not found: run lab/install.sh (%v)", n, err)
		}
	}
}

// newLab creates a namespace whose bridge carries 10.<octet>.0.1/24.
func newLab(t *testing.T, octet int) *testLab {
	t.Helper()
	requireRoot(t)
	requireBinaries(t, "ip")
	name := fmt.Sprintf("rcpxe%d-%d", os.Getpid(), nsSeq.Add(1))
	gw := netip.MustParsePrefix(fmt.Sprintf("10.%d.0.1/24", octet))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := netns.New(ctx, name, gw)
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("close netns %s: %v", name, err)
		}
	})
	return &testLab{t: t, net: n, prefix: gw.Masked(), server: gw.Addr(), dir: t.TempDir()}
}

// config is a full-mode configuration for the lab's bridge.
func (l *testLab) config() Config {
	return Config{
		Interface:     l.net.Bridge,
		Netns:         l.net.Path(),
		ServerIP:      l.server,
		StateDir:      filepath.Join(l.dir, "state"),
		Subnet:        l.prefix,
		RangeStart:    l.prefix.Addr().Next().Next().Next().Next().Next().Next().Next().Next().Next().Next(),
		FilesDir:      bootFiles(l.t),
		AutoDiscovery: true,
		LeaseTime:     10 * time.Minute,
	}
}

func (l *testLab) start(cfg Config, d Deps) *Service {
	l.t.Helper()
	if d.Logger == nil {
		d.Logger = testLogger(l.t)
	}
	s, err := New(cfg, d)
	require.NoError(l.t, err)
	require.NoError(l.t, s.Start(context.Background()))
	l.t.Cleanup(func() { require.NoError(l.t, s.Stop()) })
	return s
}

var vmSeq atomic.Int32

// boot starts a QEMU server on a new tap of the lab's bridge.
func (l *testLab) boot(name, mac string, fw qemu.Firmware, extra ...string) (*qemu.Machine, time.Time) {
	l.t.Helper()
	hw, err := net.ParseMAC(mac)
	require.NoError(l.t, err)
	return l.bootSpec(qemu.Spec{Name: name, MAC: hw, Firmware: fw, MemoryMiB: 512, ExtraArgs: extra})
}

// bootSpec starts the QEMU server spec network-booting on a new tap of
// the lab's bridge, its files under the lab's directory.
func (l *testLab) bootSpec(spec qemu.Spec) (*qemu.Machine, time.Time) {
	l.t.Helper()
	requireBinaries(l.t, "qemu-system-x86_64")
	tap := fmt.Sprintf("tap%d", vmSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(l.t, l.net.AddTap(ctx, tap))
	spec.BootNetwork, spec.Netns, spec.Tap, spec.Dir = true, l.net.Name, tap, filepath.Join(l.dir, spec.Name)
	start := time.Now()
	m, err := qemu.Start(context.Background(), spec)
	require.NoError(l.t, err)
	l.t.Cleanup(func() {
		_ = m.Stop()
		if l.t.Failed() {
			l.t.Logf("console of %s:\n%s", spec.Name, tail(m.Console(), 3000))
		}
	})
	return m, start
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// waitEvent polls mac's timeline until an event of kind appears.
func waitEvent(t *testing.T, s *Service, mac string, kind EventKind, d time.Duration, m *qemu.Machine) Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, e := range s.Timeline(mac) {
			if e.Kind == kind {
				return e
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no %s event for %s within %v; timeline:\n%s", kind, mac, d, formatTimeline(s.Timeline(mac)))
		case <-tick.C:
			if m != nil && !m.Running() {
				t.Fatalf("qemu exited before %s for %s; timeline:\n%s", kind, mac, formatTimeline(s.Timeline(mac)))
			}
		}
	}
}

func formatTimeline(evs []Event) string {
	var b strings.Builder
	var t0 time.Time
	for i, e := range evs {
		if i == 0 {
			t0 = e.Time
		}
		fmt.Fprintf(&b, "  +%6.2fs %-14s client=%s ip=%s file=%s bytes=%d state=%s cached=%v %s %s\n",
			e.Time.Sub(t0).Seconds(), e.Kind, e.Client, e.IP, e.File, e.Bytes, e.State, e.Cached, e.Detail, e.Error)
	}
	return b.String()
}

// bootTimes are the milestones of one boot, from QEMU's start.
type bootTimes struct {
	firstAck, tftpDone, kernelLoaded, callback time.Duration
}

func (b bootTimes) String() string {
	tftp := "n/a (no TFTP: iPXE ROM or HTTP boot)"
	if b.tftpDone > 0 {
		tftp = fmt.Sprintf("%.1fs", b.tftpDone.Seconds())
	}
	return fmt.Sprintf("DHCP ack %.1fs, TFTP done %s, kernel+initrd loaded %.1fs, callback %.1fs",
		b.firstAck.Seconds(), tftp, b.kernelLoaded.Seconds(), b.callback.Seconds())
}

// measure reads the milestones from the recorded events (not asserted on:
// they are measurements for the log and the closing note).
func measure(evs []Event, start time.Time) bootTimes {
	var b bootTimes
	var firstReq time.Duration
	for _, e := range evs {
		d := e.Time.Sub(start)
		switch e.Kind {
		case EventDHCPAck:
			if b.firstAck == 0 {
				b.firstAck = d
			}
		case EventDHCPRequest:
			if firstReq == 0 && e.Client != ClientDHCP {
				firstReq = d
			}
		case EventTFTPDone:
			b.tftpDone = d
		case EventHTTPKernel, EventHTTPInitrd:
			if d > b.kernelLoaded {
				b.kernelLoaded = d
			}
		case EventCallback:
			if b.callback == 0 {
				b.callback = d
			}
		}
	}
	if b.firstAck == 0 {
		// Proxy mode: the site's server acks; the client's request is the
		// closest event we see.
		b.firstAck = firstReq
	}
	return b
}

var (
	bootFilesOnce sync.Once
	bootFilesDir  string
	bootFilesErr  error
)

// bootFiles prepares the discovery image (real Debian kernel, Go-built
// initramfs) once per test binary: FilesDir/inspect/{vmlinuz,initrd.img}.
func bootFiles(t *testing.T) string {
	t.Helper()
	bootFilesOnce.Do(func() {
		dir, err := os.MkdirTemp("", "rcpxe-files-")
		if err != nil {
			bootFilesErr = err
			return
		}
		bootFilesDir = dir
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		_, bootFilesErr = bootimg.Inspection(ctx, filepath.Join(dir, DefaultDiscoveryImage))
	})
	require.NoError(t, bootFilesErr)
	return bootFilesDir
}

func TestMain(m *testing.M) {
	code := pgtest.Run(m) // a throwaway PostgreSQL, started by the first test that needs it
	if bootFilesDir != "" {
		os.RemoveAll(bootFilesDir)
	}
	os.Exit(code)
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// logInitLines logs what the image's /init printed (its own uptimes).
func logInitLines(t *testing.T, m *qemu.Machine) {
	t.Helper()
	for _, l := range strings.Split(m.Console(), "\n") {
		if i := strings.Index(l, "rackcloud-init:"); i >= 0 {
			t.Log(strings.TrimSpace(l[i:]))
		}
	}
}

func mustAddr(s string) netip.Addr         { return netip.MustParseAddr(s) }
func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// addVeth plugs a veth pair into the lab: one end on the bridge, the other
// (peer) left in the lab namespace, or moved to namespace peerNS when set.
func (l *testLab) addVeth(br, peer, peerNS string) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	steps := [][]string{
		{"ip", "link", "add", br, "type", "veth", "peer", "name", peer},
		{"ip", "link", "set", br, "master", l.net.Bridge},
		{"ip", "link", "set", br, "up"},
	}
	if peerNS != "" {
		steps = append(steps, []string{"ip", "link", "set", peer, "netns", peerNS})
	} else {
		steps = append(steps, []string{"ip", "link", "set", peer, "up"})
	}
	for _, s := range steps {
		require.NoError(l.t, l.net.Run(ctx, s[0], s[1:]...))
	}
}

// siteNet is a second namespace standing for another machine on the
// provisioning segment (the site's DHCP server), linked to the lab bridge.
func (l *testLab) siteNet(addr netip.Prefix) (name string) {
	l.t.Helper()
	name = l.net.Name + "-site"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput()
	require.NoError(l.t, err, string(out))
	l.t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			l.t.Errorf("delete netns %s: %v %s", name, err, out)
		}
	})
	l.addVeth("vsite0", "vsite1", name)
	for _, s := range [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "addr", "add", addr.String(), "dev", "vsite1"},
		{"ip", "link", "set", "vsite1", "up"},
	} {
		out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", name}, s...)...).CombinedOutput()
		require.NoError(l.t, err, "%v: %s", s, out)
	}
	return name
}

// startProcess runs a daemon in namespace ns as a child of the test and
// stops it by PID at cleanup.
func (l *testLab) startProcess(ns, logName string, name string, args ...string) *exec.Cmd {
	l.t.Helper()
	log, err := os.Create(filepath.Join(l.dir, logName))
	require.NoError(l.t, err)
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	require.NoError(l.t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(done) }()
	l.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if l.t.Failed() {
			b, _ := os.ReadFile(log.Name())
			l.t.Logf("%s log:\n%s", name, tail(string(b), 3000))
		}
	})
	return cmd
}
