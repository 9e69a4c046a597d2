// Package netns creates throwaway Linux network namespaces for the lab and
// its tests: one namespace holds a bridge (the provisioning network) and the
// taps that simulated servers plug into. Nothing in a namespace made here can
// reach the outside network; tests send traffic only there or to loopback.
package netns

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/rackcloud/rackcloud/nsnet"
)

// DefaultBridge is the bridge every namespace gets.
const DefaultBridge = "br0"

// Net is one network namespace with a bridge carrying Gateway.
type Net struct {
	// Name is the namespace name (ip netns).
	Name string
	// Bridge is the bridge interface inside the namespace.
	Bridge string
	// Gateway is the bridge's IPv4 address and prefix, e.g. 10.88.0.1/24.
	Gateway netip.Prefix
	// Gateway6 is the bridge's IPv6 address (ULA), so router advertisements
	// can be sent on the segment.
	Gateway6 netip.Prefix
}

// New creates namespace name with loopback up and a bridge that carries gw
// and a ULA IPv6 address derived from it. It fails if the namespace exists.
// It records this process as the namespace's owner, and first deletes the
// namespaces whose recorded owner is gone (see SweepStale).
func New(ctx context.Context, name string, gw netip.Prefix) (*Net, error) {
	if !gw.Addr().Is4() {
		return nil, fmt.Errorf("netns %s: gateway %s is not IPv4", name, gw)
	}
	SweepStale(ctx)
	if _, err := os.Stat(Path(name)); err == nil {
		return nil, fmt.Errorf("netns %s: already exists", name)
	}
	b := gw.Addr().As4()
	gw6 := netip.MustParsePrefix(fmt.Sprintf("fd00:%d:%d::1/64", b[1], b[2]))
	n := &Net{Name: name, Bridge: DefaultBridge, Gateway: gw, Gateway6: gw6}
	if err := run(ctx, "ip", "netns", "add", name); err != nil {
		return nil, err
	}
	if err := writeOwner(name); err != nil {
		_ = n.Close()
		return nil, err
	}
	steps := [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "link", "add", n.Bridge, "type", "bridge"},
		{"ip", "link", "set", n.Bridge, "type", "bridge", "forward_delay", "0", "stp_state", "0"},
		{"ip", "addr", "add", gw.String(), "dev", n.Bridge},
		{"ip", "-6", "addr", "add", gw6.String(), "dev", n.Bridge, "nodad"},
		{"ip", "link", "set", n.Bridge, "up"},
	}
	for _, s := range steps {
		if err := n.Run(ctx, s[0], s[1:]...); err != nil {
			_ = n.Close()
			return nil, err
		}
	}
	return n, nil
}

// Path returns the bind-mount path of namespace name, usable with
// nsenter --net=PATH.
func Path(name string) string { return "/run/netns/" + name }

// Path returns the namespace's bind-mount path.
func (n *Net) Path() string { return Path(n.Name) }

// AddTap creates a tap device enslaved to the bridge, ready for QEMU's
// -netdev tap,ifname=NAME.
func (n *Net) AddTap(ctx context.Context, tap string) error {
	for _, s := range [][]string{
		{"ip", "tuntap", "add", "dev", tap, "mode", "tap"},
		{"ip", "link", "set", tap, "master", n.Bridge},
		{"ip", "link", "set", tap, "up"},
	} {
		if err := n.Run(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// DelTap removes a tap made by AddTap.
func (n *Net) DelTap(ctx context.Context, tap string) error {
	return n.Run(ctx, "ip", "link", "del", tap)
}

// Command returns a command that runs inside the namespace (ip netns exec).
// Use nsenter (NsenterCommand) for daemons such as dockerd that must keep
// the host's cgroup and mount view.
func (n *Net) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// NsenterCommand returns a command that runs with only the network
// namespace changed.
func (n *Net) NsenterCommand(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + n.Path(), name}, args...)...)
}

// Run runs a command inside the namespace and returns its output in the
// error when it fails.
func (n *Net) Run(ctx context.Context, name string, args ...string) error {
	return runCmd(n.Command(ctx, name, args...))
}

// Close deletes the namespace and with it the bridge and the taps. Processes
// still running inside keep it alive: stop them first. Safe to call twice.
func (n *Net) Close() error {
	if _, err := os.Stat(n.Path()); os.IsNotExist(err) {
		_ = os.Remove(ownerFile(n.Name))
		return nil
	}
	if err := run(context.Background(), "ip", "netns", "del", n.Name); err != nil {
		return err
	}
	_ = os.Remove(ownerFile(n.Name))
	return nil
}

// OwnerDir holds one file per namespace made by New: the owner's PID and
// its start time (so that a reused PID is not taken for the owner).
const OwnerDir = "/run/rackcloud-netns"

func ownerFile(name string) string { return filepath.Join(OwnerDir, name) }

func writeOwner(name string) error {
	pid := os.Getpid()
	start, err := processStart(pid)
	if err != nil {
		return fmt.Errorf("netns %s: owner: %w", name, err)
	}
	if err := os.MkdirAll(OwnerDir, 0o755); err != nil {
		return fmt.Errorf("netns %s: owner: %w", name, err)
	}
	return os.WriteFile(ownerFile(name), fmt.Appendf(nil, "%d %d\n", pid, start), 0o644)
}

// processStart returns pid's start time in clock ticks since boot
// (field 22 of /proc/PID/stat).
func processStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: count
	// fields after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22 is the 20th after the name
}

// inUse reports whether any thread of any process is in namespace name
// ("ip netns pids" sees only processes whose main thread is: a boot
// service holds its namespace from locked threads). Unsure means in use.
func inUse(name string) bool {
	var st syscall.Stat_t
	if err := syscall.Stat(Path(name), &st); err != nil {
		return !os.IsNotExist(err)
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	links, err := filepath.Glob("/proc/[0-9]*/task/[0-9]*/ns/net")
	if err != nil {
		return true
	}
	for _, l := range links {
		if got, err := os.Readlink(l); err == nil && got == want {
			return true
		}
	}
	return false
}

// SweepStale deletes the namespaces made by New whose owner process has
// exited (a test run or lab that was killed before it could clean up),
// unless processes still run inside them: those are left alone, since
// they are not this process's to stop. It returns the names deleted.
// Namespaces without an owner record are never touched.
func SweepStale(ctx context.Context) []string {
	ents, err := os.ReadDir(OwnerDir)
	if err != nil {
		return nil
	}
	var deleted []string
	for _, e := range ents {
		name := e.Name()
		b, err := os.ReadFile(ownerFile(name))
		if err != nil {
			continue
		}
		var pid int
		var start uint64
		if _, err := fmt.Sscanf(string(b), "%d %d", &pid, &start); err != nil {
			continue
		}
		if got, err := processStart(pid); err == nil && got == start {
			continue // the owner lives
		}
		if _, err := os.Stat(Path(name)); os.IsNotExist(err) {
			_ = os.Remove(ownerFile(name))
			continue
		}
		if inUse(name) {
			continue
		}
		if err := run(ctx, "ip", "netns", "del", name); err != nil {
			continue
		}
		_ = os.Remove(ownerFile(name))
		deleted = append(deleted, name)
	}
	return deleted
}

func run(ctx context.Context, name string, args ...string) error {
	return runCmd(exec.CommandContext(ctx, name, args...))
}

func runCmd(c *exec.Cmd) error {
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(c.Args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// Do runs f with the sockets it opens inside the namespace (nsnet.Do: a
// socket keeps its namespace for life, whichever thread uses it later).
func (n *Net) Do(f func() error) error { return nsnet.Do(n.Path(), f) }

// Listen opens a listener inside the namespace (e.g. on the gateway
// address, for the simulated servers on the bridge).
func (n *Net) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// DialContext connects from inside the namespace; it fits
// http.Transport.DialContext.
func (n *Net) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return nsnet.Dialer(n.Path(), nil)(ctx, network, addr)
}
