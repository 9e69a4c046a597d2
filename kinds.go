package rackcloud

// Task kinds and their parameters: the api submits them, the provisioner
// and vmctl register their steps. They live here so that neither imports
// the other (or api). Every replica's engine knows every kind, so that an
// API-only replica never refuses a real kind.

// Host task kinds.
const (
	KindHostEnroll      = "host.enroll"
	KindHostProvision   = "host.provision"
	KindHostDeprovision = "host.deprovision"
	KindHostDrain       = "host.drain"
	KindHostActivate    = "host.activate"
	KindHostAdopt       = "host.adopt"
	// KindHostInstallGuest installs a bare-metal guest's image on the
	// ready bm host the guest claimed (guest.create's disk sub-task):
	// ready -> provisioning -> ready, the host still owned by the guest.
	KindHostInstallGuest = "host.install-guest"
	// KindHostFence is the availability controller's answer to a host
	// that stopped answering: confirm, power off through the BMC
	// (confirmed), fail the host (fenced), evacuate its HA guests.
	KindHostFence = "host.fence"
)

// HostFenceParams are host.fence's parameters.
type HostFenceParams struct {
	HostID string `json:"host_id"`
	// Alert names what asked for the fence ("HostDown", an alert's
	// fingerprint), for the record.
	Alert string `json:"alert,omitempty"`
}

// Guest task kinds.
const (
	KindGuestCreate = "guest.create"
	KindGuestDelete = "guest.delete"
	KindGuestStart  = "guest.start"
	KindGuestStop   = "guest.stop"
	KindGuestReboot = "guest.reboot"
	// KindGuestDisk is guest.create's sub-task that puts the guest's
	// image and disk on its host.
	KindGuestDisk = "guest.disk"
	// KindGuestMigrate moves a guest to another host (cold).
	KindGuestMigrate = "guest.migrate"
)

// HostTaskParams are the parameters of the host kinds that need only the
// host (enroll, deprovision, retry, adopt).
type HostTaskParams struct {
	HostID string `json:"host_id"`
}

// HostProvisionParams are host.provision's parameters.
type HostProvisionParams struct {
	HostID  string   `json:"host_id"`
	Role    HostRole `json:"role"`
	ImageID string   `json:"image_id"`
}

// HostInstallGuestParams are host.install-guest's parameters: the host
// the guest claimed, the guest, and the image to write on the host's disk.
type HostInstallGuestParams struct {
	HostID  string `json:"host_id"`
	GuestID string `json:"guest_id"`
	ImageID string `json:"image_id"`
}

// HostMaintenanceParams are the parameters of host.drain and
// host.activate.
type HostMaintenanceParams struct {
	HostID string `json:"host_id"`
	// Reason is the operator's, kept with the change.
	Reason string `json:"reason,omitempty"`
	// NoEvacuate (host.drain): do not move the guests off (host.evacuate,
	// cold migrations); wait until their owners stop or move them.
	NoEvacuate bool `json:"no_evacuate,omitempty"`
}

// GuestTaskParams are the parameters of the guest kinds.
type GuestTaskParams struct {
	GuestID string `json:"guest_id"`
}

// GuestMigrateParams are guest.migrate's parameters.
type GuestMigrateParams struct {
	GuestID string `json:"guest_id"`
	// HostID, when set, is the host to move to; else placement picks one
	// other than the guest's.
	HostID string `json:"host_id,omitempty"`
}

// Evacuation kinds.
const (
	// KindHostEvacuate moves every guest off a host, one sub-task per
	// guest (guest.migrate from a live host, guest.recreate from a fenced
	// one).
	KindHostEvacuate = "host.evacuate"
	// KindGuestRecreate restarts a guest of a fenced host on another host
	// from its image: the source is not touched.
	KindGuestRecreate = "guest.recreate"
)

// HostEvacuateParams are host.evacuate's parameters.
type HostEvacuateParams struct {
	HostID string `json:"host_id"`
	// Fenced says the host is powered off (its BMC confirmed it) and
	// cannot be reached: guests are recreated elsewhere from their images
	// instead of migrated.
	Fenced bool `json:"fenced,omitempty"`
}

// GuestRecreateParams are guest.recreate's parameters.
type GuestRecreateParams struct {
	GuestID string `json:"guest_id"`
	// FromHostID is the fenced host the guest leaves.
	FromHostID string `json:"from_host_id"`
}
