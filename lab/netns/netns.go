// Package netns creates throwaway Linux network namespaces for the lab and
// its tests: one namespace holds a bridge (the provisioning network) and the
// taps that simulated servers plug into. Nothing in a namespace made here can
// reach the outside network; tests send traffic only there or to loopback.
package netns

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
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
func New(ctx context.Context, name string, gw netip.Prefix) (*Net, error) {
	if !gw.Addr().Is4() {
		return nil, fmt.Errorf("netns %s: gateway %s is not IPv4", name, gw)
	}
	if _, err := os.Stat(Path(name)); err == nil {
		return nil, fmt.Errorf("netns %s: already exists", name)
	}
	b := gw.Addr().As4()
	gw6 := netip.MustParsePrefix(fmt.Sprintf("fd00:%d:%d::1/64", b[1], b[2]))
	n := &Net{Name: name, Bridge: DefaultBridge, Gateway: gw, Gateway6: gw6}
	if err := run(ctx, "ip", "netns", "add", name); err != nil {
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
		return nil
	}
	return run(context.Background(), "ip", "netns", "del", n.Name)
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
