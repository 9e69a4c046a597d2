package availability

import (
	"context"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// Run sweeps the fenced hosts while this replica holds the controller's
// lock, and stands by otherwise, until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	store.RunAsLeader(ctx, c.cfg.Pool, lockKey, c.cfg.SweepInterval, c.lead,
		func(err error) { c.log.Warn("availability: not sweeping", "err", err) })
}

func (c *Controller) lead(ctx context.Context) error {
	c.log.Info("availability: this replica sweeps the fenced hosts")
	c.m.leader.Set(1)
	defer func() {
		c.m.leader.Set(0)
		c.m.unfenced.Reset()
		c.m.stranded.Reset()
	}()
	tick := time.NewTicker(c.cfg.SweepInterval)
	defer tick.Stop()
	for {
		result := "ok"
		if err := c.Sweep(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			result = "error"
			c.log.Warn("availability: sweep", "err", err)
		}
		c.m.sweeps.WithLabelValues(result).Inc()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Sweep looks once at the fenced hosts and at the hosts that could not be
// fenced: a fenced host that still holds guests to restart gets another
// evacuation (up to EvacuationTries since its fence, each after a
// backoff); the gauges say what is left. The leader calls it every
// SweepInterval; tests call it directly.
func (c *Controller) Sweep(ctx context.Context) error {
	fenced, err := store.FencedHosts(ctx, c.cfg.Pool)
	if err != nil {
		return err
	}
	now, err := store.Now(ctx, c.cfg.Pool)
	if err != nil {
		return err
	}
	c.m.stranded.Reset()
	for _, h := range fenced {
		if err := c.sweepHost(ctx, h, now); err != nil {
			c.log.Warn("availability: sweep host", "host", h.Name, "err", err)
		}
	}
	unfenced, err := store.UnfencedHosts(ctx, c.cfg.Pool)
	if err != nil {
		return err
	}
	c.m.unfenced.Reset()
	for _, u := range unfenced {
		c.m.unfenced.WithLabelValues(u.Host, u.HostID).Set(1)
	}
	return nil
}

func (c *Controller) sweepHost(ctx context.Context, h rackcloud.Host, now time.Time) error {
	guests, err := store.GuestsOnHost(ctx, c.cfg.Pool, h.ID)
	if err != nil {
		return err
	}
	restart := 0
	for _, g := range guests {
		if a, _ := rackcloud.EvacuationFor(g, true); a == rackcloud.EvacRecreate {
			restart++
		}
	}
	if restart == 0 {
		return nil
	}
	var since time.Time
	if h.Failure != nil && h.Failure.TaskID != "" {
		if since, err = store.TaskCreated(ctx, c.cfg.Pool, h.Failure.TaskID); err != nil {
			since = time.Time{}
		}
	}
	ev, err := store.EvacuationsSince(ctx, c.cfg.Pool, h.ID, since)
	if err != nil {
		return err
	}
	switch {
	case ev.Active:
		return nil
	case ev.Tries >= c.cfg.EvacuationTries:
		c.m.stranded.WithLabelValues(h.Name, h.ID).Set(float64(restart))
		return nil
	case ev.Tries > 0 && now.Sub(ev.LastEnded) < c.cfg.RetryAfter<<(ev.Tries-1):
		return nil
	}
	id, err := c.submitEvacuation(ctx, h)
	if err != nil {
		return err
	}
	c.log.Info("availability: evacuating a fenced host again", "host", h.Name, "guests", restart, "try", ev.Tries+1, "task", id)
	return nil
}
