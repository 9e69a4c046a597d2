// Package qemu starts simulated servers for the lab: QEMU under TCG (there
// is no /dev/kvm here) with a virtio NIC on a tap in a lab network namespace,
// SeaBIOS (whose NIC ROM is iPXE) or OVMF UEFI firmware, and raw disks. The
// caller is the parent of every QEMU it starts and stops it by PID.
package qemu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Firmware selects the machine's firmware.
type Firmware string

const (
	// BIOS is SeaBIOS with QEMU's iPXE NIC ROM: the PXE client is iPXE.
	BIOS Firmware = "bios"
	// UEFI is OVMF with its own PXE stack (the NIC ROM is disabled), so the
	// real firmware-PXE -> TFTP -> iPXE chain runs.
	UEFI Firmware = "uefi"
)

// Paths of the Debian firmware files.
const (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// Disk is one raw disk image; it is created sparse at SizeMiB when missing.
type Disk struct {
	Path    string
	SizeMiB int
}

// Spec describes one simulated server.
type Spec struct {
	Name      string
	MAC       net.HardwareAddr
	CPUs      int // default 1
	MemoryMiB int // default 512
	Disks     []Disk
	Firmware  Firmware // default BIOS
	// BootNetwork boots from the network first (-boot n); otherwise the
	// first disk is tried first and the network is the fallback.
	BootNetwork bool
	// Netns is the network namespace the QEMU process runs in, Tap the tap
	// device inside it. Empty Tap means no NIC.
	Netns string
	Tap   string
	// Dir holds the console log, the QEMU pid file and the UEFI variables.
	Dir string
	// Serial is the DMI system serial number the guest sees (agent inventory).
	Serial string
	// ExtraArgs are appended to the QEMU command line.
	ExtraArgs []string
}

// Args returns the qemu-system-x86_64 arguments for s (without the binary),
// preparing UEFI variable files and disks under s.Dir.
func (s Spec) Args() ([]string, error) {
	if s.Dir == "" {
		return nil, errors.New("qemu: Spec.Dir is empty")
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, err
	}
	cpus, mem := s.CPUs, s.MemoryMiB
	if cpus == 0 {
		cpus = 1
	}
	if mem == 0 {
		mem = 512
	}
	args := []string{
		"-name", s.Name,
		"-machine", "q35,accel=tcg", "-cpu", "max",
		"-smp", strconv.Itoa(cpus), "-m", strconv.Itoa(mem),
		"-display", "none", "-machine", "graphics=off", "-nodefaults",
		"-serial", "file:" + s.ConsolePath(),
		"-pidfile", filepath.Join(s.Dir, "qemu.pid"),
	}
	if s.Serial != "" {
		args = append(args, "-smbios", "type=1,serial="+s.Serial+",manufacturer=rackcloud-lab,product=sim-"+strconv.Itoa(cpus)+"c")
	}
	if s.Firmware == UEFI {
		vars := filepath.Join(s.Dir, "OVMF_VARS.fd")
		if _, err := os.Stat(vars); os.IsNotExist(err) {
			if err := copyFile(OVMFVars, vars); err != nil {
				return nil, err
			}
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,file="+vars)
	}
	for i, d := range s.Disks {
		if _, err := os.Stat(d.Path); os.IsNotExist(err) {
			f, err := os.Create(d.Path)
			if err != nil {
				return nil, err
			}
			if err := f.Truncate(int64(d.SizeMiB) << 20); err != nil {
				f.Close()
				return nil, err
			}
			f.Close()
		}
		// Boot order by bootindex, which SeaBIOS and OVMF both honour
		// (OVMF ignores -boot order=, and its saved BootOrder would keep
		// booting a disk that has an OS over a PXE override).
		args = append(args, "-drive", fmt.Sprintf("file=%s,format=raw,if=none,id=disk%d", d.Path, i),
			"-device", fmt.Sprintf("virtio-blk-pci,drive=disk%d,bootindex=%d", i, diskIndex(s, i)))
	}
	if s.Tap != "" {
		nic := "virtio-net-pci,netdev=n0,mac=" + s.MAC.String() + ",bootindex=" + strconv.Itoa(nicIndex(s))
		if s.Firmware == UEFI {
			nic += ",romfile="
		}
		args = append(args, "-netdev", "tap,id=n0,ifname="+s.Tap+",script=no,downscript=no", "-device", nic)
	}
	return append(args, s.ExtraArgs...), nil
}

// diskIndex is disk i's place in the boot order: after the NIC when the
// machine boots from the network first.
func diskIndex(s Spec, i int) int {
	if s.BootNetwork {
		return i + 1
	}
	return i
}

// nicIndex is the NIC's place in the boot order: first, or after the
// disks.
func nicIndex(s Spec) int {
	if s.BootNetwork {
		return 0
	}
	return len(s.Disks)
}

// ConsolePath is the file the guest's serial console is written to.
func (s Spec) ConsolePath() string { return filepath.Join(s.Dir, "console.log") }

// Machine is a running QEMU started by Start.
type Machine struct {
	Spec Spec
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start launches QEMU for s as a child of this process (inside s.Netns when
// set). The context only bounds the start, not the machine's life: call Stop.
func Start(ctx context.Context, s Spec) (*Machine, error) {
	args, err := s.Args()
	if err != nil {
		return nil, err
	}
	name := "qemu-system-x86_64"
	if s.Netns != "" {
		args = append([]string{"netns", "exec", s.Netns, name}, args...)
		name = "ip"
	}
	log, err := os.Create(filepath.Join(s.Dir, "qemu.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start qemu %s: %w", s.Name, err)
	}
	m := &Machine{Spec: s, cmd: cmd, done: make(chan struct{})}
	go func() {
		m.err = cmd.Wait()
		log.Close()
		close(m.done)
	}()
	return m, nil
}

// PID is the QEMU process ID (ip netns exec execs QEMU in place).
func (m *Machine) PID() int { return m.cmd.Process.Pid }

// Done is closed when QEMU has exited and been reaped.
func (m *Machine) Done() <-chan struct{} { return m.done }

// ExitErr is how QEMU ended (cmd.Wait's error: nil, an exit status or a
// signal); nil while it runs.
func (m *Machine) ExitErr() error {
	select {
	case <-m.done:
		return m.err
	default:
		return nil
	}
}

// Running reports whether QEMU is still running.
func (m *Machine) Running() bool {
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// Stop kills QEMU by its PID and waits for it to be reaped. Safe to call
// twice and after QEMU exited on its own.
func (m *Machine) Stop() error {
	if !m.Running() {
		return nil
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	return nil
}

// Console returns what the guest has written to its serial console so far.
func (m *Machine) Console() string {
	b, _ := os.ReadFile(m.Spec.ConsolePath())
	return string(b)
}

// WaitConsole polls the console until it contains want or ctx ends.
func (m *Machine) WaitConsole(ctx context.Context, want string) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		if strings.Contains(m.Console(), want) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("qemu %s: %q not on console: %w", m.Spec.Name, want, context.Cause(ctx))
		case <-m.done:
			if strings.Contains(m.Console(), want) {
				return nil
			}
			return fmt.Errorf("qemu %s exited (%v) before %q appeared on console", m.Spec.Name, m.err, want)
		case <-t.C:
		}
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
