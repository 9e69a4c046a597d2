package vmctl

import (
	"context"
	"fmt"

	"github.com/rackcloud/rackcloud"
)

// proberFor returns the driver that reads the capacity of a host of the
// role (kvm: libvirt, docker: Docker), or an error saying why none does.
func (c *Controller) proberFor(h rackcloud.Host) (Prober, error) {
	var kind rackcloud.GuestKind
	switch h.Role {
	case rackcloud.RoleKVM:
		kind = rackcloud.GuestVM
	case rackcloud.RoleDocker:
		kind = rackcloud.GuestContainer
	default:
		return nil, fmt.Errorf("%w: host %s has role %q: only kvm and docker hosts have a daemon rackcloud talks to", rackcloud.ErrInvalid, h.Name, h.Role)
	}
	pr, ok := c.cfg.Drivers[kind].(Prober)
	if !ok {
		return nil, fmt.Errorf("%w: this server has no driver that can reach a %s host's daemon", rackcloud.ErrInvalid, h.Role)
	}
	return pr, nil
}

// Reach asks host h's daemon (libvirtd, dockerd) for its capacity: nil
// when it answers. The availability controller asks before it fences a
// host whose agent went quiet (an answering daemon means the host is up).
// ctx bounds the wait.
func (c *Controller) Reach(ctx context.Context, h rackcloud.Host) error {
	pr, err := c.proberFor(h)
	if err != nil {
		return err
	}
	t, err := c.targets.For(ctx, h)
	if err != nil {
		return err
	}
	if _, err := pr.Probe(ctx, t); err != nil {
		return fmt.Errorf("reach %s's daemon at %s: %w", h.Name, h.Endpoint, err)
	}
	return nil
}
