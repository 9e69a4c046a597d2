package provisioner

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/store"
)

// ManagedBMC reaches hosts' BMCs through a bmc.Manager, with the
// credentials stored for each host (store.OpenHostBMC).
type ManagedBMC struct {
	Pool    *pgxpool.Pool
	Sealer  *store.Sealer
	Manager *bmc.Manager
}

var (
	_ BMC         = (*ManagedBMC)(nil)
	_ PowerReader = (*ManagedBMC)(nil)
)

func (m *ManagedBMC) client(ctx context.Context, hostID string) (*bmc.Client, error) {
	b, err := store.OpenHostBMC(ctx, m.Pool, m.Sealer, hostID)
	if err != nil {
		return nil, err
	}
	return m.Manager.Client(bmc.EndpointOf(b))
}

// PXEBoot sets the next boot to PXE, then powers the host on, or cycles
// it when it was on (it must boot again to netboot).
func (m *ManagedBMC) PXEBoot(ctx context.Context, hostID string) error {
	c, err := m.client(ctx, hostID)
	if err != nil {
		return err
	}
	if err := c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{}); err != nil {
		return err
	}
	return c.SetPower(ctx, bmc.PowerCycle)
}

// DiskBoot sets the next boot to the disk, then cycles the power (or
// powers the host on).
func (m *ManagedBMC) DiskBoot(ctx context.Context, hostID string) error {
	c, err := m.client(ctx, hostID)
	if err != nil {
		return err
	}
	if err := c.SetBootDevice(ctx, bmc.BootDisk, bmc.BootOptions{}); err != nil {
		return err
	}
	return c.SetPower(ctx, bmc.PowerCycle)
}

// PowerOff cuts the host's power.
func (m *ManagedBMC) PowerOff(ctx context.Context, hostID string) error {
	c, err := m.client(ctx, hostID)
	if err != nil {
		return err
	}
	return c.SetPower(ctx, bmc.PowerOff)
}

// PowerState reads the host's power state.
func (m *ManagedBMC) PowerState(ctx context.Context, hostID string) (rackcloud.PowerState, error) {
	c, err := m.client(ctx, hostID)
	if err != nil {
		return rackcloud.PowerUnknown, err
	}
	return c.PowerState(ctx)
}

// SetPower changes the host's power (bare-metal guests' start, stop and
// reboot).
func (m *ManagedBMC) SetPower(ctx context.Context, hostID string, a bmc.PowerAction) error {
	c, err := m.client(ctx, hostID)
	if err != nil {
		return err
	}
	return c.SetPower(ctx, a)
}

// MACs returns the MACs of the host's NICs its BMC reports (Redfish).
func (m *ManagedBMC) MACs(ctx context.Context, hostID string) ([]string, error) {
	c, err := m.client(ctx, hostID)
	if err != nil {
		return nil, err
	}
	nics, err := c.NICs(ctx)
	if err != nil {
		return nil, err
	}
	var macs []string
	for _, n := range nics {
		if n.MAC != "" {
			macs = append(macs, n.MAC)
		}
	}
	return macs, nil
}

// Classify is the failure reason of a BMC error: the BMC refused the
// credentials (or has none usable here), or it could not be reached.
func Classify(err error) rackcloud.FailureReason {
	switch {
	case errors.Is(err, bmc.ErrAuth), errors.Is(err, bmc.ErrCipher), errors.Is(err, store.ErrNoBMC):
		return rackcloud.FailBMCRefused
	}
	return rackcloud.FailBMCUnreachable
}
