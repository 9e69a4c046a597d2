package vmctl

import (
	"context"
	"errors"
	"fmt"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// Step names of host.adopt.
const (
	StepConnect = "connect"
	StepReady   = "ready"
)

// DefaultAdoptOverheadMiB is the memory an adopted host keeps for its own
// system when its operator set no overhead.
const DefaultAdoptOverheadMiB = 512

// adoptKind makes an already-running KVM or Docker host ready: reach its
// daemon at the endpoint the operator gave (with their credentials or the
// host CA's), read its capacity, record it, and move the host to ready.
func (c *Controller) adoptKind() tasks.Kind {
	return tasks.Kind{Name: rackcloud.KindHostAdopt, MaxAttempts: 3, Steps: []tasks.Step{
		{Name: StepConnect, Run: c.connectStep},
		{Name: StepReady, Run: c.adoptReadyStep},
	}}
}

func (c *Controller) adoptHost(ctx context.Context, sc *tasks.StepContext) (rackcloud.Host, error) {
	var p rackcloud.HostTaskParams
	if err := sc.Params(&p); err != nil {
		return rackcloud.Host{}, err
	}
	h, err := store.GetHost(ctx, c.cfg.Pool, p.HostID)
	if errors.Is(err, rackcloud.ErrNotFound) {
		return h, tasks.Permanent(err)
	}
	return h, err
}

func (c *Controller) connectStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	h, err := c.adoptHost(ctx, sc)
	if err != nil {
		return nil, err
	}
	pr, err := c.proberFor(h)
	if err != nil {
		return nil, tasks.Permanent(err)
	}
	t, err := c.targets.For(ctx, h)
	if err != nil {
		return nil, err
	}
	cp, err := pr.Probe(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("reach %s's daemon at %s: %w", h.Name, h.Endpoint, err)
	}
	// What the daemon cannot say (dockerd knows no disk size) is what
	// the operator registered the host with.
	res := cp.Resources
	if res.DiskGiB == 0 {
		res.DiskGiB = h.Resources.DiskGiB
	}
	res.DiskIOPS, res.NetworkMbs = h.Resources.DiskIOPS, h.Resources.NetworkMbs
	over := h.Overhead
	if over == (rackcloud.Resources{}) {
		over.MemoryMiB = DefaultAdoptOverheadMiB
	}
	inv := rackcloud.Inventory{CPUs: cp.Resources.CPUCores, MemoryMiB: cp.Resources.MemoryMiB}
	if h.Inventory != nil {
		inv = *h.Inventory
	}
	if _, err := store.SetHostInventory(ctx, c.cfg.Pool, h.ID, inv, res, over); err != nil {
		return nil, err
	}
	return map[string]any{"daemon": cp.Daemon, "resources": res}, nil
}

func (c *Controller) adoptReadyStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	h, err := c.adoptHost(ctx, sc)
	if err != nil {
		return nil, err
	}
	if h.State == rackcloud.HostReady {
		return nil, nil
	}
	next, err := rackcloud.NextHost(rackcloud.HostLife{State: h.State}, rackcloud.HostEvAdopt)
	if err != nil {
		return nil, tasks.Permanent(err)
	}
	_, err = store.TransitionHost(ctx, c.cfg.Pool, h.ID, store.Transition{From: h.State, To: next.To})
	return nil, err
}
