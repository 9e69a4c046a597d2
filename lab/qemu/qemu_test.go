package qemu

import (
	"context"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
)

func TestArgs(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:aa:01:01")
	dir := t.TempDir()
	args, err := Spec{Name: "n1", MAC: mac, Firmware: UEFI, Tap: "tap0", BootNetwork: true, Dir: dir,
		Disks: []Disk{{Path: dir + "/d0.img", SizeMiB: 16}}}.Args()
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(args, " ")
	for _, want := range []string{"accel=tcg", "mac=52:54:00:aa:01:01,bootindex=0,romfile=", OVMFCode,
		"virtio-blk-pci,drive=disk0,bootindex=1"} {
		if !strings.Contains(line, want) {
			t.Errorf("args lack %q: %s", want, line)
		}
	}
	if st, err := os.Stat(dir + "/d0.img"); err != nil || st.Size() != 16<<20 {
		t.Fatalf("disk not created at 16 MiB: %v", err)
	}
}

func TestStartStopReaps(t *testing.T) {
	m, err := Start(context.Background(), Spec{Name: "t", Dir: t.TempDir(), MemoryMiB: 64})
	if err != nil {
		t.Fatal(err)
	}
	pid := m.PID()
	if !m.Running() {
		t.Fatalf("qemu exited at once: %s", m.Console())
	}
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("pid %d still exists after Stop", pid)
	}
	if err := m.Stop(); err != nil {
		t.Fatal(err)
	}
}
