package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/rackcloud/rackcloud"
)

// Wipe zeroes each end of each disk and leaves the middle alone.
func TestWipe(t *testing.T) {
	dir := t.TempDir()
	sizes := map[string]int64{"vda": 8 << 20, "vdb": 1536 << 10, "tiny": 4096}
	var disks []rackcloud.InventoryDisk
	for name, size := range sizes {
		b := bytes.Repeat([]byte{0xAB}, int(size))
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
		disks = append(disks, rackcloud.InventoryDisk{Name: name, SizeBytes: size})
	}
	wiped, err := Wipe(dir, disks)
	if err != nil || len(wiped) != 3 {
		t.Fatalf("Wipe = %v, %v", wiped, err)
	}
	for name, size := range sizes {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) != size {
			t.Fatalf("%s: size %d, want %d (a wipe never grows a disk)", name, len(b), size)
		}
		for i, c := range b {
			atEnds := int64(i) < WipeSpan || int64(i) >= size-WipeSpan
			if atEnds && c != 0 {
				t.Fatalf("%s: byte %d not wiped", name, i)
			}
			if !atEnds && c != 0xAB {
				t.Fatalf("%s: byte %d in the middle was touched", name, i)
			}
		}
	}
	if _, err := Wipe(dir, []rackcloud.InventoryDisk{{Name: "../etc", SizeBytes: 1}}); err == nil {
		t.Fatal("a disk name with a path is refused")
	}
	if _, err := Wipe(dir, []rackcloud.InventoryDisk{{Name: "missing", SizeBytes: 1}}); err == nil {
		t.Fatal("a disk that is not there is an error")
	}
}

func TestParseCmdlineState(t *testing.T) {
	if b := ParseCmdline("quiet rackcloud.state=deprovisioning rackcloud.mac=52:54:00:00:00:01"); b.State != StateDeprovisioning {
		t.Fatalf("state %q", b.State)
	}
}
