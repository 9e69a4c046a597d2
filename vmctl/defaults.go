package vmctl

import "github.com/rackcloud/rackcloud"

// DefaultDrivers are the drivers a server runs guests with: libvirt for
// VMs, Docker for containers. Bare-metal guests need the server's BMC
// access: the server adds a BareMetal driver with it.
func DefaultDrivers() map[rackcloud.GuestKind]Driver {
	return map[rackcloud.GuestKind]Driver{rackcloud.GuestVM: &Libvirt{}, rackcloud.GuestContainer: &Docker{}}
}
