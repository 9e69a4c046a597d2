package rack_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/netns"
	"github.com/rackcloud/rackcloud/lab/qemu"
	"github.com/rackcloud/rackcloud/lab/rack"
)

func startRack(t *testing.T, cfg rack.Config) *rack.Rack {
	t.Helper()
	labtest.Need(t, "ipmi_sim", "ipmitool")
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := rack.Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		var pids []int
		for _, n := range r.Nodes {
			if m := n.Machine(); m != nil {
				pids = append(pids, m.PID())
			}
			if p := n.IPMISimPID(); p != 0 {
				pids = append(pids, p)
			}
		}
		require.NoError(t, r.Stop())
		require.NoError(t, r.Stop(), "Stop twice")
		for _, pid := range pids {
			require.NoError(t, gone(pid), "QEMU or ipmi_sim %d after Stop", pid)
		}
	})
	return r
}

// gone reports an error if pid still exists (running or zombie).
func gone(pid int) error {
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return fmt.Errorf("process %d still exists: %s", pid, b)
	}
	return nil
}

func ipmitool(ctx context.Context, n *rack.Node, args ...string) (string, error) {
	return ipmitoolPW(ctx, n, n.Password, args...)
}

func ipmitoolPW(ctx context.Context, n *rack.Node, password string, args ...string) (string, error) {
	a := append([]string{"-I", "lanplus", "-C", "3", "-H", n.IPMI.Addr().String(),
		"-p", fmt.Sprint(n.IPMI.Port()), "-U", n.User, "-E"}, args...)
	cmd := exec.CommandContext(ctx, "ipmitool", a...)
	cmd.Env = append(os.Environ(), "IPMI_PASSWORD="+password)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestIPMIVirtual drives the simulated IPMI BMCs with the real ipmitool:
// power, boot device, sensors that follow power, and identity.
func TestIPMIVirtual(t *testing.T) {
	r := startRack(t, rack.Config{Nodes: 2, Virtual: true})
	ctx := ctxT(t, 60*time.Second)
	n := r.Nodes[0]
	other := r.Nodes[1]
	require.NotEqual(t, n.IPMI, other.IPMI)
	require.NotEqual(t, n.Size, other.Size, "nodes have different sizes")
	var table bytes.Buffer
	r.Print(&table)
	for _, x := range r.Nodes {
		require.Contains(t, table.String(), x.IPMI.String())
		require.Contains(t, table.String(), x.MAC.String())
	}
	require.Len(t, r.Describe(), 2)
	require.Equal(t, "off", r.Describe()[0].Power)

	out, err := ipmitool(ctx, n, "chassis", "power", "status")
	require.NoError(t, err, out)
	require.Contains(t, out, "Chassis Power is off")

	out, err = ipmitool(ctx, n, "chassis", "bootdev", "pxe")
	require.NoError(t, err, out)
	require.Equal(t, rack.BootPXE, n.BootOverride().Device)

	out, err = ipmitool(ctx, n, "chassis", "power", "on")
	require.NoError(t, err, out)
	require.Equal(t, rackcloud.PowerOn, n.Power())
	require.Equal(t, rackcloud.PowerOff, other.Power(), "the other node is untouched")
	require.Equal(t, rack.BootNone, n.BootOverride().Device, "a one-shot override is used by the power-on")
	require.Equal(t, 1, n.Starts())

	out, err = ipmitool(ctx, n, "chassis", "power", "status")
	require.NoError(t, err, out)
	require.Contains(t, out, "Chassis Power is on")

	// Sensors follow power; ipmi_sim polls its files once a second.
	want := n.Sensors()
	require.Eventually(t, func() bool {
		out, err = ipmitool(ctx, n, "sdr", "elist", "full")
		return err == nil &&
			strings.Contains(out, fmt.Sprintf("%d degrees C", want.TemperatureC)) &&
			strings.Contains(out, fmt.Sprintf("%d RPM", want.FanRPM)) &&
			strings.Contains(out, fmt.Sprintf("%d Watts", want.PowerWatts))
	}, 20*time.Second, 200*time.Millisecond, "sensors: %s", out)

	out, err = ipmitool(ctx, n, "chassis", "power", "cycle")
	require.NoError(t, err, out)
	require.NoError(t, n.WaitPower(ctx, rackcloud.PowerOn))
	require.Eventually(t, func() bool { return n.Starts() == 2 }, 20*time.Second, 50*time.Millisecond, "cycle powers on again")

	out, err = ipmitool(ctx, n, "chassis", "power", "reset")
	require.NoError(t, err, out)
	require.Equal(t, 3, n.Starts())

	out, err = ipmitool(ctx, n, "chassis", "power", "off")
	require.NoError(t, err, out)
	require.Equal(t, rackcloud.PowerOff, n.Power())

	out, err = ipmitool(ctx, n, "mc", "info")
	require.NoError(t, err, out)
	require.Contains(t, out, "Firmware Revision")

	// Wrong password: the real ipmitool refuses the session.
	out, err = ipmitoolPW(ctx, n, "wrong", "chassis", "power", "status")
	require.Error(t, err)
	require.Contains(t, out, "Unable to establish IPMI v2 / RMCP+ session")
}

// TestIPMIFaults: a BMC that lies reports the lie; a slow BMC is slow.
func TestIPMIFaults(t *testing.T) {
	r := startRack(t, rack.Config{Nodes: 1, Virtual: true})
	ctx := ctxT(t, 60*time.Second)
	n := r.Nodes[0]
	n.SetFault(rack.Fault{ReportPower: rackcloud.PowerOn})
	out, err := ipmitool(ctx, n, "chassis", "power", "status")
	require.NoError(t, err, out)
	require.Contains(t, out, "Chassis Power is on")
	require.Equal(t, rackcloud.PowerOff, n.Power(), "the machine is really off")

	// Slow: ipmitool gives up on a BMC that takes longer than its timeout.
	n.SetFault(rack.Fault{Delay: 5 * time.Second})
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out, err = ipmitool(sctx, n, "-N", "1", "-R", "1", "chassis", "power", "status")
	require.Error(t, err, out)
	n.SetFault(rack.Fault{})
	require.Eventually(t, func() bool {
		out, err = ipmitool(ctx, n, "chassis", "power", "status")
		return err == nil && strings.Contains(out, "Chassis Power is off")
	}, 45*time.Second, 500*time.Millisecond, "answers again once the fault is gone")
}

// TestPXEPowerOn powers real QEMU servers on through ipmi_sim, one with
// SeaBIOS (iPXE ROM) and one with OVMF (the firmware's own PXE), and sees
// each ask for an address over DHCP on the provisioning network.
func TestPXEPowerOn(t *testing.T) {
	labtest.Need(t, "qemu-system-x86_64")
	net := labtest.Net(t, "rkt", "10.77.0.1/24")
	logf := labtest.Dnsmasq(t, net)
	r := startRack(t, rack.Config{Nodes: 2, Net: net, Firmware: []qemu.Firmware{qemu.BIOS, qemu.UEFI}})
	ctx := ctxT(t, 150*time.Second)
	for _, n := range r.Nodes {
		t.Run(string(n.Firmware), func(t *testing.T) { pxePowerOn(t, ctx, net, logf, n) })
	}
}

func pxePowerOn(t *testing.T, ctx context.Context, net *netns.Net, logf string, n *rack.Node) {

	out, err := ipmitool(ctx, n, "chassis", "bootdev", "pxe")
	require.NoError(t, err, out)
	out, err = ipmitool(ctx, n, "chassis", "power", "on")
	require.NoError(t, err, out)
	m := n.Machine()
	require.NotNil(t, m, "power on starts QEMU")
	// The command line QEMU was started with comes from its spec:
	// /proc/PID/cmdline races the exec of ip netns exec under load, and
	// reads empty. A QEMU that dies at once is caught here.
	select {
	case <-m.Done():
		qlog, _ := os.ReadFile(filepath.Join(n.Dir, "qemu.log"))
		t.Fatalf("QEMU of %s exited right after power on (%v); qemu.log:\n%s\nconsole:\n%s", n.Name, m.ExitErr(), qlog, m.Console())
	case <-time.After(time.Second):
	}
	args, err := m.Spec.Args()
	require.NoError(t, err)
	stat := strings.Join(args, " ")
	require.Regexp(t, `mac=[0-9a-f:]+,bootindex=0`, stat, "PXE first")
	if n.Firmware == qemu.UEFI {
		require.Contains(t, stat, "OVMF")
	}

	mac := regexp.QuoteMeta(n.MAC.String())
	re := regexp.MustCompile(`DHCPDISCOVER\(` + net.Bridge + `\) ` + mac)
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(logf)
		return re.Match(b)
	}, 120*time.Second, 250*time.Millisecond, "DHCPDISCOVER from %s", n.MAC)

	out, err = ipmitool(ctx, n, "chassis", "power", "off")
	require.NoError(t, err, out)
	require.Nil(t, n.Machine())
	require.NoError(t, gone(m.PID()), "QEMU reaped after power off")
}

// TestIdentitySurvivesRestart: a rack started again from the same
// directory is the same rack (MACs, serials, BMC password) on the same
// fixed BMC ports, so the control plane's records of it stay valid; a
// fixed port that is taken is a clear error.
func TestIdentitySurvivesRestart(t *testing.T) {
	labtest.Need(t, "ipmi_sim", "ipmitool")
	ctx := ctxT(t, 90*time.Second)
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	ipmiPort := udp.LocalAddr().(*net.UDPAddr).Port
	require.NoError(t, udp.Close())
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	rfPort := tcp.Addr().(*net.TCPAddr).Port
	require.NoError(t, tcp.Close())

	cfg := rack.Config{Nodes: 2, Virtual: true, Redfish: true, Dir: t.TempDir(), IPMIPort: ipmiPort, RedfishPort: rfPort}
	r1, err := rack.Start(ctx, cfg)
	require.NoError(t, err)
	type ident struct {
		mac, serial, password string
		ipmi, redfish         uint16
	}
	idents := func(r *rack.Rack) []ident {
		var out []ident
		for _, n := range r.Nodes {
			out = append(out, ident{n.MAC.String(), n.Serial, n.Password, n.IPMI.Port(), n.Redfish.Port()})
		}
		return out
	}
	first := idents(r1)
	require.Equal(t, uint16(ipmiPort), first[0].ipmi)
	require.Equal(t, uint16(ipmiPort+1), first[1].ipmi)
	require.Equal(t, uint16(rfPort+1), first[1].redfish)
	// What an install wrote on a node's disk is there after the restart.
	disk := filepath.Join(r1.Nodes[0].Dir, "disk0.img")
	require.NoError(t, os.WriteFile(disk, []byte("installed"), 0o644))
	require.NoError(t, r1.Stop())

	r2, err := rack.Start(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r2.Stop() })
	require.Equal(t, first, idents(r2))
	b, err := os.ReadFile(disk)
	require.NoError(t, err, "the node's disk survives")
	require.Equal(t, "installed", string(b))
	out, err := ipmitoolPW(ctx, r2.Nodes[1], first[1].password, "chassis", "power", "status")
	require.NoError(t, err, out)
	require.Contains(t, out, "Chassis Power is off")

	// Another rack asking for the same fixed ports is refused plainly.
	_, err = rack.Start(ctx, rack.Config{Nodes: 1, Virtual: true, Dir: t.TempDir(), IPMIPort: ipmiPort})
	require.ErrorContains(t, err, "is taken")
	// A corrupt identity is an error that names the file.
	bad := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bad, "identity.json"), []byte("{"), 0o600))
	_, err = rack.Start(ctx, rack.Config{Nodes: 1, Virtual: true, Dir: bad})
	require.ErrorContains(t, err, "identity.json is corrupt")
}
