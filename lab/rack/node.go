package rack

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/qemu"
)

// BootDevice is a node's next-boot override.
type BootDevice string

// Boot devices. BootNone means no override: the firmware's own order (the
// first disk, then the network) applies.
const (
	BootNone BootDevice = "none"
	BootPXE  BootDevice = "pxe"
	BootDisk BootDevice = "disk"
	BootCD   BootDevice = "cdrom"
	BootBIOS BootDevice = "bios"
)

// Boot is a node's boot override as its BMCs set it.
type Boot struct {
	Device BootDevice
	// Persistent overrides apply to every power-on; the others are used by
	// the next power-on and then cleared. ipmi_sim does not pass the IPMI
	// persistent flag to its chassis program, so overrides set over IPMI
	// are always one-shot.
	Persistent bool
	// UEFI is the Redfish BootSourceOverrideMode (informational).
	UEFI bool
}

// Fault makes a node's BMCs misbehave, for tests of the BMC client.
type Fault struct {
	// Delay holds every BMC answer this long: the IPMI chassis program
	// (ipmi_sim waits for it, so the whole BMC is slow) and every Redfish
	// request.
	Delay time.Duration
	// ReportPower, when not empty, is the power state both BMCs report
	// whatever the machine really does (a BMC that lies).
	ReportPower rackcloud.PowerState
	// RedfishPowerState, when not empty, is the literal PowerState the
	// Redfish BMC reports (e.g. "Banana": a BMC that talks nonsense).
	RedfishPowerState string
	// RedfishMAC, when not empty, is the literal MAC address the Redfish
	// BMC reports for the node's NIC (e.g. "zz": nonsense).
	RedfishMAC string
	// Hold, when not nil, holds every IPMI chassis request (so the whole
	// ipmi_sim) until it is closed: a call in flight for as long as a
	// test needs, seen with Held.
	Hold <-chan struct{}
}

// Sensor readings of a node, following its power state.
type Sensors struct {
	TemperatureC int
	FanRPM       int
	PowerWatts   int
}

// Node is one simulated server and its BMCs.
type Node struct {
	// Name is "<rack>-node<index>".
	Name  string
	Index int
	// MAC is the MAC of the node's NIC on the provisioning network.
	MAC      net.HardwareAddr
	Size     Size
	Firmware qemu.Firmware
	// Serial is the DMI system serial number the guest sees.
	Serial string
	// Dir holds the node's disks, console log and BMC state.
	Dir string
	// IPMI is the node's ipmi_sim BMC (invalid when Config.NoIPMI).
	IPMI netip.AddrPort
	// Redfish is the node's Redfish BMC (invalid unless Config.Redfish),
	// RedfishURL its https:// base URL.
	Redfish    netip.AddrPort
	RedfishURL string
	// User and Password log in to both BMCs.
	User     string
	Password string
	// Tap is the node's tap device in the provisioning namespace.
	Tap string

	rack *Rack
	log  *slog.Logger

	op      sync.Mutex // serialises power transitions (QEMU start/stop)
	stopped bool       // guarded by op: the rack is stopping, no more power-ons

	mu      sync.Mutex // guards the fields below
	power   bool
	boot    Boot
	machine *qemu.Machine
	starts  int
	fault   Fault
	held    int // chassis requests waiting on fault.Hold
	uuid    string

	sim     *process
	guard   *ipmiGuard // the node's IPMI port, in front of sim
	redfish *redfishServer
}

func newNode(r *Rack, i int, id identity) (*Node, error) {
	rackID, _ := hex.DecodeString(id.ID)
	cfg := r.cfg
	name := fmt.Sprintf("%s-node%d", cfg.Name, i)
	dir := filepath.Join(cfg.Dir, name)
	if !id.kept {
		// A new rack starts blank; the same rack again keeps its nodes'
		// disks and UEFI variables, like real servers.
		if err := os.RemoveAll(dir); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	n := &Node{
		Name:     name,
		Index:    i,
		MAC:      net.HardwareAddr{0x52, 0x54, 0x00, rackID[0], rackID[1], byte(i)},
		Size:     cfg.Sizes[(i-1)%len(cfg.Sizes)],
		Firmware: cfg.Firmware[(i-1)%len(cfg.Firmware)],
		Serial:   fmt.Sprintf("RC%X%02d", rackID, i),
		Dir:      dir,
		User:     cfg.User,
		Password: cfg.Password,
		Tap:      fmt.Sprintf("rk%d", i),
		rack:     r,
		log:      r.log.With("node", name),
		boot:     Boot{Device: BootNone},
		uuid:     fmt.Sprintf("%08x-%04x-4000-8000-%s%02x", uint32(rackID[0])<<8|uint32(rackID[1]), i, id.Seed, byte(i)),
	}
	return n, nil
}

// start writes the sensor files, adds the tap and starts the BMCs.
func (n *Node) start(ctx context.Context) error {
	if err := n.writeSensors(); err != nil {
		return err
	}
	if n.rack.cfg.Net != nil && !n.rack.cfg.Virtual {
		if err := n.rack.cfg.Net.AddTap(ctx, n.Tap); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	if !n.rack.cfg.NoIPMI {
		if err := n.startIPMISim(ctx); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	if n.rack.cfg.Redfish {
		s, err := startRedfish(n)
		if err != nil {
			return fmt.Errorf("node %s: redfish: %w", n.Name, err)
		}
		n.redfish = s
		n.Redfish = s.addr
		n.RedfishURL = "https://" + s.addr.String()
	}
	return nil
}

// stop powers off and stops the BMCs and the tap.
func (n *Node) stop() error {
	var errs []error
	if n.redfish != nil {
		n.redfish.close()
	}
	if n.guard != nil {
		n.guard.close()
	}
	if n.sim != nil {
		if err := n.sim.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	n.op.Lock()
	n.stopped = true // a late BMC request cannot start QEMU again
	n.powerOffLocked()
	n.op.Unlock()
	if n.rack.cfg.Net != nil && !n.rack.cfg.Virtual {
		_ = n.rack.cfg.Net.DelTap(context.Background(), n.Tap)
	}
	return errors.Join(errs...)
}

// Spec is the QEMU machine the node runs when powered on with boot
// override b.
func (n *Node) Spec(b Boot) qemu.Spec {
	s := qemu.Spec{
		Name:        n.Name,
		MAC:         n.MAC,
		CPUs:        n.Size.CPUs,
		MemoryMiB:   n.Size.MemoryMiB,
		Firmware:    n.Firmware,
		BootNetwork: b.Device == BootPXE,
		Dir:         n.Dir,
		Serial:      n.Serial,
	}
	for i, mib := range n.Size.DisksMiB {
		s.Disks = append(s.Disks, qemu.Disk{Path: filepath.Join(n.Dir, fmt.Sprintf("disk%d.img", i)), SizeMiB: mib})
	}
	if n.rack.cfg.Net != nil {
		s.Netns = n.rack.cfg.Net.Name
		s.Tap = n.Tap
	}
	return s
}

// Power is the node's real power state (not what a faulty BMC reports).
func (n *Node) Power() rackcloud.PowerState {
	n.mu.Lock()
	defer n.mu.Unlock()
	return powerState(n.power)
}

// BootOverride is the pending boot override.
func (n *Node) BootOverride() Boot {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.boot
}

// Machine is the running QEMU, nil while the node is off or Virtual.
func (n *Node) Machine() *qemu.Machine {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.machine
}

// IPMISimPID is the PID of the node's ipmi_sim (0 without one).
func (n *Node) IPMISimPID() int {
	if n.sim == nil {
		return 0
	}
	return n.sim.pid()
}

// Starts counts the power-ons since the rack started.
func (n *Node) Starts() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.starts
}

// Held is the number of IPMI chassis requests waiting on Fault.Hold.
func (n *Node) Held() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.held
}

// SetFault makes the node's BMCs misbehave; Fault{} restores them.
func (n *Node) SetFault(f Fault) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fault = f
}

func (n *Node) currentFault() Fault {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.fault
}

// reportedPower is what the BMCs say: the truth unless a fault lies.
func (n *Node) reportedPower() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch n.fault.ReportPower {
	case rackcloud.PowerOn:
		return true
	case rackcloud.PowerOff:
		return false
	}
	return n.power
}

// Sensors returns the node's current sensor readings.
func (n *Node) Sensors() Sensors {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sensorsLocked()
}

func (n *Node) sensorsLocked() Sensors {
	if !n.power {
		return Sensors{TemperatureC: 20 + n.Index%5, FanRPM: 0, PowerWatts: 6}
	}
	c := n.Size.CPUs
	return Sensors{TemperatureC: 34 + 2*c, FanRPM: 3000 + 600*c, PowerWatts: 40 + 30*c}
}

// SetBoot sets the next-boot override (what the BMCs do).
func (n *Node) SetBoot(b Boot) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.boot = b
	n.log.Info("boot override", "device", b.Device, "persistent", b.Persistent)
}

// PowerOn starts the node's machine with the pending boot override (and
// clears a one-shot override). Powering on a running node does nothing.
func (n *Node) PowerOn() error {
	n.op.Lock()
	defer n.op.Unlock()
	return n.powerOnLocked()
}

func (n *Node) powerOnLocked() error {
	if n.stopped {
		return fmt.Errorf("power on %s: the rack is stopping", n.Name)
	}
	n.mu.Lock()
	if n.power {
		n.mu.Unlock()
		return nil
	}
	boot := n.boot
	n.mu.Unlock()
	var m *qemu.Machine
	if !n.rack.cfg.Virtual {
		var err error
		m, err = qemu.Start(context.Background(), n.Spec(boot))
		if err != nil {
			return fmt.Errorf("power on %s: %w", n.Name, err)
		}
		n.log.Info("power on", "pid", m.PID(), "boot", boot.Device)
	} else {
		n.log.Info("power on (virtual)", "boot", boot.Device)
	}
	n.mu.Lock()
	n.power = true
	n.machine = m
	n.starts++
	if !n.boot.Persistent {
		n.boot = Boot{Device: BootNone}
	}
	n.mu.Unlock()
	if m != nil {
		go n.watch(m)
	}
	return n.writeSensors()
}

// watch turns the node off when its QEMU exits on its own.
func (n *Node) watch(m *qemu.Machine) {
	<-m.Done()
	n.mu.Lock()
	mine := n.machine == m
	if mine {
		n.machine = nil
		n.power = false
	}
	n.mu.Unlock()
	if mine {
		n.log.Info("machine exited", "pid", m.PID())
		_ = n.writeSensors()
	}
}

// PowerOff stops the node's machine and reaps it. Powering off a node that
// is off does nothing.
func (n *Node) PowerOff() {
	n.op.Lock()
	defer n.op.Unlock()
	n.powerOffLocked()
}

func (n *Node) powerOffLocked() {
	n.mu.Lock()
	m := n.machine
	was := n.power
	n.machine = nil
	n.power = false
	n.mu.Unlock()
	if m != nil {
		_ = m.Stop()
	}
	if was {
		n.log.Info("power off")
		_ = n.writeSensors()
	}
}

// Reset restarts a running node's machine (a hard reset re-reads the boot
// override); a node that is off stays off.
func (n *Node) Reset() error {
	n.op.Lock()
	defer n.op.Unlock()
	n.mu.Lock()
	on := n.power
	n.mu.Unlock()
	if !on {
		return nil
	}
	n.powerOffLocked()
	return n.powerOnLocked()
}

// WaitPower polls until the node's real power state is want or ctx ends.
func (n *Node) WaitPower(ctx context.Context, want rackcloud.PowerState) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if n.Power() == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %s: power is %s, want %s: %w", n.Name, n.Power(), want, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// Sensor files read by ipmi_sim (raw values: see sensorSDRs).
func (n *Node) sensorFile(name string) string { return filepath.Join(n.Dir, "sensor-"+name) }

func (n *Node) writeSensors() error {
	s := n.Sensors()
	for name, raw := range map[string]int{
		"temp":  s.TemperatureC,
		"fan":   s.FanRPM / fanRPMPerCount,
		"power": s.PowerWatts / wattsPerCount,
	} {
		p := n.sensorFile(name)
		if err := os.WriteFile(p+".tmp", []byte(strconv.Itoa(raw)+"\n"), 0o644); err != nil {
			return err
		}
		if err := os.Rename(p+".tmp", p); err != nil {
			return err
		}
	}
	return nil
}

func powerState(on bool) rackcloud.PowerState {
	if on {
		return rackcloud.PowerOn
	}
	return rackcloud.PowerOff
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
