package agent

import (
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"

	"github.com/rackcloud/rackcloud"
)

func TestCollectFixture(t *testing.T) {
	fsys := fstest.MapFS{
		"proc/cpuinfo":                     {Data: []byte("processor\t: 0\nmodel name\t: QEMU Virtual CPU\n\nprocessor\t: 1\nmodel name\t: QEMU Virtual CPU\n")},
		"proc/meminfo":                     {Data: []byte("MemTotal:        2097152 kB\nMemFree: 1 kB\n")},
		"sys/block/vda/device/model":       {Data: []byte("virtio disk\n")},
		"sys/block/vda/size":               {Data: []byte("33554432\n")},
		"sys/block/vda/queue/rotational":   {Data: []byte("0\n")},
		"sys/block/sdb/device/model":       {Data: []byte("HDD\n")},
		"sys/block/sdb/size":               {Data: []byte("2048\n")},
		"sys/block/sdb/queue/rotational":   {Data: []byte("1\n")},
		"sys/block/loop0/size":             {Data: []byte("100\n")}, // no device: skipped
		"sys/class/net/eth0/device/vendor": {Data: []byte("0x1af4\n")},
		"sys/class/net/eth0/address":       {Data: []byte("52:54:00:AA:01:01\n")},
		"sys/class/net/eth0/speed":         {Data: []byte("-1\n")},
		"sys/class/net/lo/address":         {Data: []byte("00:00:00:00:00:00\n")}, // no device: skipped
		"sys/class/dmi/id/sys_vendor":      {Data: []byte("rackcloud-lab\n")},
		"sys/class/dmi/id/product_name":    {Data: []byte("sim-2c\n")},
		"sys/class/dmi/id/product_serial":  {Data: []byte("SN-0001\n")},
		"sys/firmware/efi/runtime":         {Data: []byte("")},
	}
	got, err := Collect(fsys)
	if err != nil {
		t.Fatal(err)
	}
	want := rackcloud.Inventory{
		Vendor: "rackcloud-lab", Product: "sim-2c", Serial: "SN-0001", CPUModel: "QEMU Virtual CPU",
		CPUs: 2, MemoryMiB: 2048, Firmware: "uefi",
		Disks: []rackcloud.InventoryDisk{
			{Name: "sdb", SizeBytes: 2048 * 512, Rotational: true, Model: "HDD"},
			{Name: "vda", SizeBytes: 16 << 30, Model: "virtio disk"},
		},
		NICs: []rackcloud.InventoryNIC{{Name: "eth0", MAC: "52:54:00:aa:01:01"}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("inventory (-want +got):\n%s", d)
	}
}

func TestCollectErrors(t *testing.T) {
	for name, fsys := range map[string]fstest.MapFS{
		"no cpuinfo":   {"proc/meminfo": {Data: []byte("MemTotal: 1 kB\n")}},
		"no meminfo":   {"proc/cpuinfo": {Data: []byte("processor: 0\n")}},
		"bad memtotal": {"proc/cpuinfo": {Data: []byte("processor: 0\n")}, "proc/meminfo": {Data: []byte("MemTotal: lots\n")}},
		"no processor": {"proc/cpuinfo": {Data: []byte("flags: x\n")}, "proc/meminfo": {Data: []byte("MemTotal: 1024 kB\n")}},
	} {
		if _, err := Collect(fsys); err == nil {
			t.Errorf("%s: Collect succeeded", name)
		}
	}
}

// On the real machine the test runs on: the numbers must match what the
// kernel says through another path.
func TestCollectThisMachine(t *testing.T) {
	inv, err := Collect(os.DirFS("/"))
	if err != nil {
		t.Fatal(err)
	}
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	n := 0
	for _, line := range strings.Split(string(cpuinfo), "\n") {
		if strings.HasPrefix(line, "processor") {
			n++
		}
	}
	if inv.CPUs != n || n == 0 {
		t.Errorf("CPUs = %d, cpuinfo has %d processor lines", inv.CPUs, n)
	}
	if inv.MemoryMiB < 64 {
		t.Errorf("MemoryMiB = %d", inv.MemoryMiB)
	}
	for _, d := range inv.Disks {
		if strings.HasPrefix(d.Name, "loop") || strings.HasPrefix(d.Name, "zram") {
			t.Errorf("virtual disk reported: %+v", d)
		}
	}
}

func FuzzParseMemTotal(f *testing.F) {
	f.Add("MemTotal:        2097152 kB\n")
	f.Add("MemTotal: -1 kB")
	f.Add("MemTotal:")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseMemTotal(s)
		if err == nil && v <= 0 {
			t.Fatalf("accepted non-positive MemTotal %d from %q", v, s)
		}
	})
}

func FuzzParseCPUInfo(f *testing.F) {
	f.Add("processor\t: 0\nmodel name\t: X\n")
	f.Add(strings.Repeat("processor: 1\n", 100))
	f.Fuzz(func(t *testing.T, s string) {
		n, _ := ParseCPUInfo(s)
		if n < 0 || n > strings.Count(s, "processor") {
			t.Fatalf("n = %d for %q", n, s)
		}
	})
}
