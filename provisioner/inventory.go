package provisioner

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/rackcloud/rackcloud"
)

// inventoryEvent is the boot event kind of the agent's report (the boot
// service records POST /boot/{mac}/inventory as one).
const inventoryEvent = string(rackcloud.BootEventInventory)

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
