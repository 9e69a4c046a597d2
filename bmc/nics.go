package bmc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rackcloud/rackcloud"
)

// NICs reads the server's network interfaces and their MAC addresses, so
// that a host enrolled by its BMC alone is recognised when it boots from
// the network. Over Redfish they are the ComputerSystems'
// EthernetInterfaces (the host's ports; the BMC's own port is under its
// Manager and is not read). A Redfish BMC that lists none gives
// ErrUnsupported, one that reports a MAC that is not one ErrBadResponse.
//
// IPMI has no standard command for the host's MAC addresses (only OEM
// ones, and the BMC's own LAN channel), so over IPMI NICs returns
// ErrUnsupported at once, without asking the BMC: its NICs are learnt when
// the host boots into the inspection agent instead.
func (c *Client) NICs(ctx context.Context) ([]NIC, error) {
	const op = "nics"
	if c.Endpoint().Protocol != rackcloud.BMCRedfish {
		err := &Error{BMC: c.key, Op: op, Kind: ErrUnsupported,
			Err: errors.New("IPMI has no standard way to read the host's NIC MAC addresses")}
		c.record(ctx, op, time.Now(), &call{}, err)
		return nil, err
	}
	v, err := c.doDirect(ctx, op, func(ctx context.Context, cl *call) (any, error) {
		nics, err := c.redfishNICs(ctx, cl)
		if err == nil && len(nics) == 0 {
			err = fmt.Errorf("%w: no EthernetInterfaces with a MAC address", ErrUnsupported)
		}
		return nics, err
	})
	if err != nil {
		return nil, err
	}
	return v.([]NIC), nil
}

// redfishNIC is what a Redfish EthernetInterface says of itself.
type redfishNIC struct {
	ID, Name                        string
	MACAddress, PermanentMACAddress string
	SpeedMbps                       int
	InterfaceEnabled                bool
	StatusEnabled                   bool // Status.State is Enabled
}

// nicOf turns an EthernetInterface into a NIC. The MAC is MACAddress (the
// one in use, which the firmware's PXE sends, and what Ironic reads), else
// PermanentMACAddress; ok is false for an interface with neither (or only
// zeros). The interface is enabled when InterfaceEnabled says so or, for
// BMCs that leave it out, its Status.State is Enabled. It is pure.
func nicOf(e redfishNIC) (nic NIC, ok bool, err error) {
	raw := e.MACAddress
	if isNoMAC(raw) {
		raw = e.PermanentMACAddress
	}
	if isNoMAC(raw) {
		return NIC{}, false, nil
	}
	mac, err := rackcloud.NormalizeMAC(raw)
	if err != nil {
		return NIC{}, false, fmt.Errorf("%w: EthernetInterface %s has MAC address %q", ErrBadResponse, e.ID, raw)
	}
	name := e.Name
	if name == "" {
		name = e.ID
	}
	return NIC{Name: name, MAC: mac, SpeedMbps: max(e.SpeedMbps, 0), Enabled: e.InterfaceEnabled || e.StatusEnabled}, true, nil
}

func isNoMAC(s string) bool {
	switch s {
	case "", "00:00:00:00:00:00", "00-00-00-00-00-00":
		return true
	}
	return false
}
