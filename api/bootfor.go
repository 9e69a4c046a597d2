package api

import "github.com/rackcloud/rackcloud"

// Boot decisions: what a host netboots, by purpose.
const (
	// BootInspection netboots the boot service's inspection image (its
	// agent reports the inventory).
	BootInspection = "inspection"
	// BootInstall netboots the host's image's installer.
	BootInstall = "install"
	// BootLocal leaves the network boot: the host boots its disk.
	BootLocal = "local"
)

// BootDecision is what a host boots: the action the boot service's script
// takes, why, and, to install, the image's boot profile.
type BootDecision struct {
	// Action is "netboot" or "local" (pxe.BootAction).
	Action  string
	Purpose string
	// Boot is the installer's profile (only for BootInstall).
	Boot rackcloud.BootProfile
}

// BootFor decides what h boots, from its lifecycle state and its image
// (nil when it has none): it is the one place that decides, and the boot
// service renders the answer. Discovered, inspecting and available hosts
// boot the inspection image (never an image's kernel: an available host
// with an image is not being installed); provisioning and deprovisioning
// hosts boot the image's installer (the inspection image when the image
// has no boot profile: its agent wipes and installs); ready, draining,
// maintenance and failed hosts boot their disk.
func BootFor(h rackcloud.Host, im *rackcloud.Image) BootDecision {
	switch h.State {
	case rackcloud.HostProvisioning, rackcloud.HostDeprovisioning:
		if im != nil && im.Boot.Kernel != "" {
			return BootDecision{Action: "netboot", Purpose: BootInstall, Boot: im.Boot}
		}
		return BootDecision{Action: "netboot", Purpose: BootInspection}
	case rackcloud.HostReady, rackcloud.HostDraining, rackcloud.HostMaintenance, rackcloud.HostFailed:
		return BootDecision{Action: "local", Purpose: BootLocal}
	}
	return BootDecision{Action: "netboot", Purpose: BootInspection}
}
