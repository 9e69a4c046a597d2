package vmctl

import (
	"context"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// reconcileLock is the advisory lock key of the reconciler: one replica
// at a time asks the hosts.
const reconcileLock int64 = 0x7263_766d_6374_6c31 // "rcvmctl1"

// reconcileLoop runs Reconcile every cfg.Reconcile while this replica is
// the reconciler's leader.
func (c *Controller) reconcileLoop(ctx context.Context) {
	for ctx.Err() == nil {
		held, err := store.WithLeaderLock(ctx, c.cfg.Pool, reconcileLock, 5*time.Second, func(ctx context.Context) error {
			t := time.NewTicker(c.cfg.Reconcile)
			defer t.Stop()
			for {
				if err := c.Reconcile(ctx); err != nil && ctx.Err() == nil {
					c.log.Warn("reconcile guests", "err", err)
				}
				select {
				case <-ctx.Done():
					return nil
				case <-t.C:
				}
			}
		})
		if err != nil && ctx.Err() == nil {
			c.log.Warn("reconciler leadership", "err", err)
		}
		_ = held
		select {
		case <-ctx.Done():
		case <-time.After(c.cfg.Reconcile):
		}
	}
}

// Reconcile compares what each host's driver says of its guests with the
// database and records the guests' observed states (and a guest event when
// one changes). It never changes what was asked for (the guest's state):
// a crashed guest is reported, and the availability controller or the
// owner decides. A host that does not answer is skipped and logged.
func (c *Controller) Reconcile(ctx context.Context) error {
	guests, err := store.SettledGuests(ctx, c.cfg.Pool)
	if err != nil {
		return err
	}
	byHost := map[string][]rackcloud.Guest{}
	var order []string
	for _, g := range guests {
		if _, ok := byHost[g.HostID]; !ok {
			order = append(order, g.HostID)
		}
		byHost[g.HostID] = append(byHost[g.HostID], g)
	}
	for _, hostID := range order {
		c.reconcileHost(ctx, byHost[hostID])
	}
	return nil
}

func (c *Controller) reconcileHost(ctx context.Context, guests []rackcloud.Guest) {
	first, err := c.workOn(ctx, guests[0])
	if err != nil {
		c.log.Warn("reconcile: host", "host", guests[0].HostID, "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var listed map[string]Observed
	if l, ok := first.driver.(Lister); ok {
		if listed, err = l.List(ctx, first.t); err != nil {
			c.log.Warn("reconcile: list guests", "host", first.host.Name, "err", err)
			return
		}
	}
	for _, g := range guests {
		var o Observed
		if listed != nil {
			var ok bool
			if o, ok = listed[g.ID]; !ok {
				o = Observed{State: ObservedMissing, Detail: "the host has no such guest"}
			}
		} else {
			w, err := c.workOn(ctx, g)
			if err != nil {
				continue
			}
			if o, err = w.driver.Observe(ctx, w.t, w.s); err != nil {
				c.log.Warn("reconcile: observe", "guest", g.ID, "err", err)
				continue
			}
		}
		c.observe(ctx, g, o)
	}
}
