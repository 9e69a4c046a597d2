package vmctl

import "github.com/rackcloud/rackcloud"

// DefaultDrivers are the drivers a server runs guests with: libvirt for
// VMs, Docker for containers. Bare-metal guests have no driver yet.
func DefaultDrivers() map[rackcloud.GuestKind]Driver {
	return map[rackcloud.GuestKind]Driver{rackcloud.GuestVM: &Libvirt{}, rackcloud.GuestContainer: &Docker{}}
}
