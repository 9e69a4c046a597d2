package api_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/api"
)

// What a host boots follows its state: an available host with an image
// boots the inspection image, not the image's kernel (it is not being
// installed); only provisioning and deprovisioning boot the installer.
func TestBootFor(t *testing.T) {
	im := &rackcloud.Image{Boot: rackcloud.BootProfile{Kernel: "install/vmlinuz", Initrd: "install/initrd.img"}}
	for _, st := range rackcloud.HostStates() {
		d := api.BootFor(rackcloud.Host{State: st}, im)
		switch st {
		case rackcloud.HostProvisioning, rackcloud.HostDeprovisioning:
			require.Equal(t, api.BootDecision{Action: "netboot", Purpose: api.BootInstall, Boot: im.Boot}, d, st)
			require.Equal(t, api.BootDecision{Action: "netboot", Purpose: api.BootInspection},
				api.BootFor(rackcloud.Host{State: st}, nil), "%s without an installer: the inspection image's agent does the work", st)
		case rackcloud.HostDiscovered, rackcloud.HostInspecting, rackcloud.HostAvailable:
			require.Equal(t, api.BootDecision{Action: "netboot", Purpose: api.BootInspection}, d, st)
		default:
			require.Equal(t, api.BootDecision{Action: "local", Purpose: api.BootLocal}, d, st)
		}
	}
}
