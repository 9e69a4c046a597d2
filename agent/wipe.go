package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rackcloud/rackcloud"
)

// WipeSpan is what Wipe zeroes at each end of a disk: the partition
// tables (MBR, GPT and its backup in the last sectors) and the start of
// the first file system, so that the disk no longer boots the old OS.
const WipeSpan = 1 << 20

// ParamState is the lifecycle state the boot script was rendered for; a
// deprovisioning host's agent wipes its disks before it reports.
const ParamState = "rackcloud.state"

// StateDeprovisioning is the state in which the agent wipes.
const StateDeprovisioning = "deprovisioning"

// Wipe zeroes the first and the last WipeSpan bytes of every disk of
// the inventory, as block devices under devDir (/dev), and syncs them. It
// returns the disks it wiped; the first error stops it.
func Wipe(devDir string, disks []rackcloud.InventoryDisk) ([]string, error) {
	var wiped []string
	zero := make([]byte, WipeSpan)
	for _, d := range disks {
		if d.Name == "" || strings.ContainsAny(d.Name, "/\\") {
			return wiped, fmt.Errorf("wipe: bad disk name %q", d.Name)
		}
		if strings.HasPrefix(d.Name, "sr") {
			continue // an optical drive: nothing of the host's is on it
		}
		f, err := os.OpenFile(filepath.Join(devDir, d.Name), os.O_WRONLY, 0)
		if err != nil {
			return wiped, fmt.Errorf("wipe %s: %w", d.Name, err)
		}
		err = wipeEnds(f, d.SizeBytes, zero)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return wiped, fmt.Errorf("wipe %s: %w", d.Name, err)
		}
		wiped = append(wiped, d.Name)
	}
	return wiped, nil
}

func wipeEnds(f *os.File, size int64, zero []byte) error {
	head := min(int64(len(zero)), size)
	if _, err := f.WriteAt(zero[:head], 0); err != nil {
		return err
	}
	if tail := size - int64(len(zero)); tail > head {
		if _, err := f.WriteAt(zero, tail); err != nil {
			return err
		}
	} else if size > head {
		if _, err := f.WriteAt(zero[:size-head], head); err != nil {
			return err
		}
	}
	return f.Sync()
}
