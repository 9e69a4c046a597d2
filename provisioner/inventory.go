package provisioner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// errBadReport marks an agent report that is not an inventory.
var errBadReport = errors.New("not an inventory report")

// latestReport is the newest agent report of host hostID that the API
// stored at or after since (the boot service records POST
// /boot/{mac}/inventory as an inventory event): rackcloud.ErrNotFound
// while none came, errBadReport for one that does not parse.
func (p *Provisioner) latestReport(ctx context.Context, hostID string, since time.Time) (rackcloud.Inventory, error) {
	ev, err := store.LatestBootEvent(ctx, p.cfg.Pool, hostID, string(rackcloud.BootEventInventory), since)
	if err != nil {
		return rackcloud.Inventory{}, err
	}
	inv, err := ParseInventory(ev.Data)
	if err != nil {
		return inv, fmt.Errorf("%w: %w", errBadReport, err)
	}
	return inv, nil
}

// ParseInventory reads the agent's report as the boot service recorded it
// (the event's data): a rackcloud.Inventory with at least CPUs and memory.
func ParseInventory(data []byte) (rackcloud.Inventory, error) {
	var inv rackcloud.Inventory
	if len(data) == 0 {
		return inv, errors.New("empty report")
	}
	if err := json.Unmarshal(data, &inv); err != nil {
		return inv, fmt.Errorf("not an inventory: %w", err)
	}
	if inv.CPUs <= 0 || inv.MemoryMiB <= 0 {
		return inv, fmt.Errorf("no CPUs or memory in the report (cpus %d, memory %d MiB)", inv.CPUs, inv.MemoryMiB)
	}
	return inv, nil
}

// Resources are a host's total resources from its inventory: its logical
// CPUs, its memory, and its disks in whole GiB. What the host keeps for
// itself is its overhead, set apart (Host.Overhead).
func Resources(inv rackcloud.Inventory) rackcloud.Resources {
	var disk int64
	for _, d := range inv.Disks {
		disk += d.SizeBytes
	}
	var mbps int64
	for _, n := range inv.NICs {
		mbps += int64(n.Speed)
	}
	return rackcloud.Resources{CPUCores: inv.CPUs, MemoryMiB: inv.MemoryMiB, DiskGiB: disk >> 30, NetworkMbs: mbps}
}
