package vmctl

import (
	"context"
	"errors"
	"fmt"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// Step names of guest.migrate.
const (
	StepStopSource  = "stop-source"
	StepMove        = "move"
	StepCopyDisk    = "copy-disk"
	StepCleanSource = "clean-source"
)

// migrateKind moves a guest cold: stop it on its host, move its claim to
// another host in one statement the database judges (the old host's
// resources are released as the new one's are charged), copy its disk
// (VMs, through DiskMover) or prepare its image (containers: rackcloud
// owns no container state), make and start it there, then remove it from
// the old host. A guest is never running on two hosts: it is stopped
// before its claim moves.
func (c *Controller) migrateKind() tasks.Kind {
	return tasks.Kind{Name: rackcloud.KindGuestMigrate, Steps: []tasks.Step{
		{Name: StepStopSource, Run: c.stopSourceStep},
		{Name: StepMove, Run: c.moveStep, Undo: c.moveBackStep},
		{Name: StepCopyDisk, Run: c.copyDiskStep},
		{Name: StepConfigure, Run: c.configureStep},
		{Name: StepStart, Run: c.startStep},
		{Name: StepCleanSource, Run: c.cleanSourceStep},
	}}
}

// stopOutput records the host a migration leaves.
type stopOutput struct {
	SourceHostID string `json:"source_host_id"`
	WasRunning   bool   `json:"was_running"`
}

// migrating reads a migration's guest and the host it leaves.
func (c *Controller) migrating(ctx context.Context, sc *tasks.StepContext) (rackcloud.Guest, stopOutput, error) {
	var src stopOutput
	if err := sc.Output(StepStopSource, &src); err != nil {
		return rackcloud.Guest{}, src, err
	}
	g, err := c.guestOf(ctx, sc)
	return g, src, err
}

func (c *Controller) migrateParams(sc *tasks.StepContext) (rackcloud.GuestMigrateParams, error) {
	var p rackcloud.GuestMigrateParams
	return p, sc.Params(&p)
}

func (c *Controller) stopSourceStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	w, err := c.guestWork(ctx, sc)
	if err != nil {
		return nil, err
	}
	g := w.g
	p, err := c.migrateParams(sc)
	if err != nil {
		return nil, err
	}
	if p.HostID == "" && g.WantHostID != "" { // checked before the guest is stopped
		return nil, tasks.Permanent(fmt.Errorf("%w: guest %s may run on host %s only (exact placement): name the host to move it to",
			rackcloud.ErrConflict, g.Name, w.host.Name))
	}
	if p.HostID == g.HostID {
		return nil, tasks.Permanent(fmt.Errorf("%w: guest %s is on host %s already", rackcloud.ErrConflict, g.Name, w.host.Name))
	}
	if err := w.driver.Stop(ctx, w.t, w.s, c.cfg.StopGrace); err != nil && !errors.Is(err, rackcloud.ErrNotFound) {
		return nil, fmt.Errorf("stop %s on %s: %w", g.Name, w.host.Name, err)
	}
	return stopOutput{SourceHostID: g.HostID, WasRunning: g.State == rackcloud.GuestRunning}, nil
}

func (c *Controller) moveStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	g, src, err := c.migrating(ctx, sc)
	if err != nil {
		return nil, err
	}
	if g.HostID != src.SourceHostID { // moved by an earlier attempt
		return PlaceOutput{HostID: g.HostID, Explanation: g.Placement}, nil
	}
	p, err := c.migrateParams(sc)
	if err != nil {
		return nil, err
	}
	out, err := c.moveClaim(ctx, g, src.SourceHostID, p.HostID, "moved")
	var nf *NoFitError
	if errors.As(err, &nf) {
		return nil, tasks.Permanent(fmt.Errorf("%w: no host to move %s to: %s", rackcloud.ErrConflict, g.Name, nf.Explanation.Summary))
	}
	return out, err
}

// moveClaim places guest g on a host other than from (on hostID when set)
// and moves its claim there in one statement the database judges,
// recording a guest event of kind event. A claim lost to another replica
// excludes that host and tries the next decision, up to ClaimTries; no
// fit is *NoFitError.
func (c *Controller) moveClaim(ctx context.Context, g rackcloud.Guest, from, hostID, event string) (PlaceOutput, error) {
	r, err := c.request(ctx, g)
	if err != nil {
		return PlaceOutput{}, err
	}
	if hostID != "" {
		r.HostID = hostID
	}
	if err := c.waitReady(ctx); err != nil {
		return PlaceOutput{}, err
	}
	// The guest's own usage is still on its source host, which is
	// excluded: placement sees the others as they are.
	r.Exclude = map[string]bool{from: true}
	for range c.cfg.ClaimTries {
		d, err := c.keeper.Place(r)
		var nf *NoFitError
		if errors.As(err, &nf) {
			c.m.decisions.WithLabelValues("refused").Inc()
			c.m.refusals.WithLabelValues(nf.Explanation.LastFilter()).Inc()
			return PlaceOutput{}, err
		}
		if err != nil {
			return PlaceOutput{}, err
		}
		err = store.MoveGuest(ctx, c.cfg.Pool, g.ID, from, d.HostID, d.Explain())
		if err == nil {
			c.m.decisions.WithLabelValues("placed").Inc()
			c.keeper.Claimed(d.HostID, g)
			_ = store.AddGuestEvent(ctx, c.cfg.Pool, g.ID, event, d.Explain())
			return PlaceOutput{HostID: d.HostID, HostName: c.HostName(d.HostID), Explanation: d.Explain()}, nil
		}
		if !errors.Is(err, rackcloud.ErrConflict) {
			return PlaceOutput{}, err
		}
		c.m.decisions.WithLabelValues("conflict").Inc()
		c.m.conflicts.Inc()
		r.Exclude[d.HostID] = true
		if err := c.keeper.Refresh(ctx, d.HostID); err != nil {
			return PlaceOutput{}, err
		}
	}
	return PlaceOutput{}, fmt.Errorf("moving %s lost %d claims in a row; will retry", g.Name, c.cfg.ClaimTries)
}

// moveBackStep puts the claim back on the source host after a failed
// copy or start (the source still has the guest's disk); when the claim
// never moved (no host took it), a guest that ran is started again where
// it is.
func (c *Controller) moveBackStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	var src stopOutput
	if err := sc.Output(StepStopSource, &src); err != nil {
		return nil, nil
	}
	g, err := c.guestOf(ctx, sc)
	if err != nil {
		return nil, err
	}
	if g.HostID == src.SourceHostID {
		return c.restartUnmoved(ctx, g, src)
	}
	if w, err := c.workOn(ctx, g); err == nil {
		if err := w.driver.Delete(ctx, w.t, w.s); err != nil {
			return nil, fmt.Errorf("remove the half-moved %s from %s: %w", g.Name, w.host.Name, err)
		}
	}
	if err := store.MoveGuest(ctx, c.cfg.Pool, g.ID, g.HostID, src.SourceHostID, "moved back: migration failed"); err != nil {
		return nil, err
	}
	state := rackcloud.GuestStopped
	if src.WasRunning {
		state = rackcloud.GuestFailed
	}
	_, err = store.SetGuestState(ctx, c.cfg.Pool, g.ID, state, "migration failed and was undone: see task "+sc.TaskID+
		"; the guest is stopped on its old host", nil)
	return nil, err
}

func (c *Controller) copyDiskStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	g, src, err := c.migrating(ctx, sc)
	if err != nil {
		return nil, err
	}
	dst, err := c.workOn(ctx, g)
	if err != nil {
		return nil, err
	}
	mover, ok := dst.driver.(DiskMover)
	if !ok {
		// No state to carry: the image is prepared on the new host.
		if err := dst.driver.Prepare(ctx, dst.t, dst.s); err != nil {
			return nil, permanentIfInvalid(err)
		}
		return map[string]string{"disk": "prepared from the image"}, nil
	}
	from := g
	from.HostID = src.SourceHostID
	srcw, err := c.workOn(ctx, from)
	if err != nil {
		return nil, err
	}
	r, size, err := mover.ExportDisk(ctx, srcw.t, srcw.s)
	if err != nil {
		return nil, fmt.Errorf("export %s's disk from %s: %w", g.Name, srcw.host.Name, err)
	}
	defer r.Close()
	if err := mover.ImportDisk(ctx, dst.t, dst.s, r, size); err != nil {
		return nil, fmt.Errorf("import %s's disk on %s: %w", g.Name, dst.host.Name, err)
	}
	return map[string]any{"disk": "copied", "bytes": size, "from": srcw.host.Name, "to": dst.host.Name}, nil
}

func (c *Controller) cleanSourceStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	g, src, err := c.migrating(ctx, sc)
	if err != nil {
		return nil, err
	}
	from := g
	from.HostID = src.SourceHostID
	w, err := c.workOn(ctx, from)
	if err != nil {
		return nil, err
	}
	if err := w.driver.Delete(ctx, w.t, w.s); err != nil {
		return nil, fmt.Errorf("remove %s from its old host %s: %w", g.Name, w.host.Name, err)
	}
	return map[string]string{"removed_from": w.host.Name}, nil
}

// restartUnmoved starts a guest that was stopped for a migration that
// found no host: it never left its host. A start that fails leaves it
// failed, with the reason.
func (c *Controller) restartUnmoved(ctx context.Context, g rackcloud.Guest, src stopOutput) (any, error) {
	if !src.WasRunning {
		return nil, nil
	}
	w, err := c.workOn(ctx, g)
	if err != nil {
		return nil, err
	}
	if err := w.driver.Start(ctx, w.t, w.s); err != nil {
		_, serr := store.SetGuestState(ctx, c.cfg.Pool, g.ID, rackcloud.GuestFailed,
			fmt.Sprintf("migration found no host, and the restart on %s failed: %v", w.host.Name, err), nil)
		return nil, serr
	}
	return map[string]string{"restarted_on": w.host.Name}, nil
}
