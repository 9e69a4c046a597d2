package rack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rackcloud/rackcloud/bmc/rmcp"
)

// IPMI sensor numbers and scaling of the simulated BMC. ipmi_sim reads
// each sensor's raw byte from a file in the node directory once a second;
// reading = M * raw (B = 0, no exponents).
const (
	fanRPMPerCount = 50 // fan: M = 50 RPM per count
	wattsPerCount  = 2  // power: M = 2 W per count
)

// sensorSDR is one IPMI Full Sensor Record (IPMI 2.0 table 43-1) for an
// analog threshold sensor with linear conversion and no thresholds.
type sensorSDR struct {
	num    byte
	typ    byte // sensor type: 0x01 temperature, 0x04 fan, 0x0b other units
	entity byte // entity ID: 0x03 processor, 0x1d fan, 0x15 power unit
	unit   byte // base unit: 1 degrees C, 18 RPM, 6 Watts
	m      byte
	name   string
	file   string // sensor-<file> in the node directory
}

var sensorSDRs = []sensorSDR{
	{num: 1, typ: 0x01, entity: 0x03, unit: 1, m: 1, name: "CPU Temp", file: "temp"},
	{num: 2, typ: 0x04, entity: 0x1d, unit: 18, m: fanRPMPerCount, name: "Fan1", file: "fan"},
	{num: 3, typ: 0x0b, entity: 0x15, unit: 6, m: wattsPerCount, name: "Power", file: "power"},
}

func (s sensorSDR) bytes() []byte {
	body := []byte{
		0x20, 0x00, s.num, // owner: BMC, LUN 0, sensor number
		s.entity, 0x01, // entity ID and instance
		0x7f,        // initialization: scanning, events, thresholds, hysteresis, type
		0x40,        // capabilities: auto re-arm, no hysteresis, no thresholds
		s.typ, 0x01, // sensor type, event/reading type: threshold
		0, 0, 0, 0, 0, 0, // event and reading masks
		0x00, s.unit, 0x00, // units: unsigned, base unit, no modifier
		0x00,      // linear
		s.m, 0x00, // M, tolerance
		0x00, 0x00, // B, accuracy
		0x00,    // accuracy, direction
		0x00,    // R and B exponents
		0x00,    // analog characteristics
		0, 0, 0, // nominal, normal max, normal min
		0xff, 0x00, // sensor max and min reading
		0, 0, 0, 0, 0, 0, // thresholds
		0, 0, // hysteresis
		0, 0, // reserved
		0,                        // OEM
		0xc0 | byte(len(s.name)), // ID string: 8-bit ASCII
	}
	body = append(body, s.name...)
	hdr := []byte{0x00, 0x00, 0x51, 0x01, byte(len(body))} // record ID (assigned), SDR v1.5, type 1
	return append(hdr, body...)
}

// lanConf is hardened as real BMCs are: IPMI 1.5 sessions only with MD5
// (no "none", "straight" or MD2, which take any or a clear-text password),
// and the guard in front refuses RMCP+ cipher suite 0.
const lanConf = `name "%[1]s"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 %[2]d
    priv_limit admin
    allowed_auths_callback md5
    allowed_auths_user md5
    allowed_auths_operator md5
    allowed_auths_admin md5
    guid %[3]s
  endlan
  chassis_control "%[4]s"
  user 2 true "%[5]s" "%[6]s" admin 10 md5
`

func (n *Node) emuFile() string {
	var b strings.Builder
	b.WriteString("mc_setbmc 0x20\n")
	b.WriteString("mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n")
	b.WriteString("sel_enable 0x20 1000 0x0a\n")
	for _, s := range sensorSDRs {
		b.WriteString("main_sdr_add 0x20")
		for _, x := range s.bytes() {
			fmt.Fprintf(&b, " 0x%02x", x)
		}
		b.WriteString("\n")
	}
	for _, s := range sensorSDRs {
		fmt.Fprintf(&b, "sensor_add 0x20 0 %d 0x%02x 0x01 poll 1000 file \"%s\"\n", s.num, s.typ, n.sensorFile(s.file))
	}
	b.WriteString("mc_enable 0x20\n")
	return b.String()
}

// startIPMISim starts the node's ipmi_sim on a free loopback UDP port and
// waits until it answers.
func (n *Node) startIPMISim(ctx context.Context) error {
	prog, err := n.writeChassisScript()
	if err != nil {
		return err
	}
	for _, c := range []string{n.Name, n.User, n.Password} {
		if strings.ContainsAny(c, "\"\n ") {
			return fmt.Errorf("ipmi_sim: %q has a quote, space or newline", c)
		}
	}
	if err := os.WriteFile(filepath.Join(n.Dir, "lab.emu"), []byte(n.emuFile()), 0o644); err != nil {
		return err
	}
	// The node's IPMI port is the guard's (see ipmiGuard); ipmi_sim
	// listens on a free port behind it.
	public := "127.0.0.1:0"
	if base := n.rack.cfg.IPMIPort; base > 0 {
		public = fmt.Sprintf("127.0.0.1:%d", base+n.Index-1)
		c, err := net.ListenPacket("udp4", public)
		if err != nil {
			return fmt.Errorf("ipmi_sim: IPMI port %s is taken: %w", public, err)
		}
		c.Close()
	}
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freeUDPPort()
		if err != nil {
			return err
		}
		guid := strings.ReplaceAll(n.uuid, "-", "")
		conf := fmt.Sprintf(lanConf, n.Name, port, guid, prog, n.User, n.Password)
		if err := os.WriteFile(filepath.Join(n.Dir, "lan.conf"), []byte(conf), 0o600); err != nil {
			return err
		}
		state := filepath.Join(n.Dir, "ipmi-state")
		if err := os.RemoveAll(state); err != nil {
			return err
		}
		if err := os.MkdirAll(state, 0o700); err != nil {
			return err
		}
		p, err := startProcess(filepath.Join(n.Dir, "ipmi_sim.log"), "ipmi_sim",
			"-c", filepath.Join(n.Dir, "lan.conf"), "-f", filepath.Join(n.Dir, "lab.emu"), "-s", state, "-n")
		if err != nil {
			return err
		}
		sim := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
		if last = p.waitIPMI(ctx, sim); last != nil {
			_ = p.stop()
			continue
		}
		g, err := startIPMIGuard(public, net.UDPAddrFromAddrPort(sim))
		if err != nil {
			_ = p.stop()
			return fmt.Errorf("ipmi_sim: IPMI port %s is taken: %w", public, err)
		}
		n.sim, n.guard = p, g
		n.IPMI = netip.AddrPortFrom(sim.Addr(), uint16(g.port()))
		n.log.Info("ipmi_sim up", "addr", n.IPMI, "sim", sim, "pid", p.pid())
		return nil
	}
	return fmt.Errorf("ipmi_sim: %w", last)
}

// process is a child of the harness, stopped by its PID and reaped.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startProcess(logPath, name string, args ...string) (*process, error) {
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("%s not installed (lab/install.sh installs it): %w", name, err)
	}
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// waitIPMI waits until the BMC at addr answers, the process dies, or ctx
// (at most 10 s) ends.
func (p *process) waitIPMI(ctx context.Context, addr netip.AddrPort) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		pctx, pcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		err := rmcp.Ping(pctx, addr.String())
		pcancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited before answering: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("not answering at %s: %w", addr, err)
		default:
		}
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after 5 s, and
// reaps the process. Safe to call twice.
func (p *process) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	pid := p.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.done
	}
	var ee *exec.ExitError
	if p.err != nil && !errors.As(p.err, &ee) {
		return p.err
	}
	return nil
}
