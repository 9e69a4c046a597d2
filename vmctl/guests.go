package vmctl

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// Step names of the guest kinds.
const (
	StepPlace     = "place"
	StepDisk      = "disk"
	StepConfigure = "configure"
	StepStart     = "start"
	StepStop      = "stop"
	StepReboot    = "reboot"
	StepDestroy   = "destroy"
	StepRelease   = "release"
	StepForget    = "forget"
	StepPrepare   = "prepare"
)

// Kinds are the task kinds the controller runs.
func (c *Controller) Kinds() []tasks.Kind {
	return []tasks.Kind{
		{Name: rackcloud.KindGuestCreate, Steps: []tasks.Step{
			{Name: StepPlace, Run: c.placeStep, Undo: c.unplaceStep},
			{Name: StepDisk, Run: c.diskStep},
			{Name: StepConfigure, Run: c.configureStep, Undo: c.destroyStep},
			{Name: StepStart, Run: c.startStep},
		}},
		{Name: rackcloud.KindGuestDisk, Steps: []tasks.Step{{Name: StepPrepare, Run: c.prepareStep}}},
		{Name: rackcloud.KindGuestStart, Steps: []tasks.Step{{Name: StepStart, Run: c.startStep}}},
		{Name: rackcloud.KindGuestStop, Steps: []tasks.Step{{Name: StepStop, Run: c.stopStep}}},
		{Name: rackcloud.KindGuestReboot, Steps: []tasks.Step{{Name: StepReboot, Run: c.rebootStep}}},
		{Name: rackcloud.KindGuestDelete, Steps: []tasks.Step{
			{Name: StepDestroy, Run: c.destroyStep},
			{Name: StepRelease, Run: c.releaseStep},
			{Name: StepForget, Run: c.forgetStep},
		}},
		c.migrateKind(),
		c.adoptKind(),
		c.evacuateKind(), c.recreateKind(),
	}
}

// guestOf reads the task's guest.
func (c *Controller) guestOf(ctx context.Context, sc *tasks.StepContext) (rackcloud.Guest, error) {
	var p rackcloud.GuestTaskParams
	if err := sc.Params(&p); err != nil {
		return rackcloud.Guest{}, err
	}
	g, err := store.GetGuest(ctx, c.cfg.Pool, p.GuestID)
	if errors.Is(err, rackcloud.ErrNotFound) {
		return g, tasks.Permanent(fmt.Errorf("guest %s: %w", p.GuestID, err))
	}
	return g, err
}

// guestWork reads the task's guest and resolves its host, driver,
// target and spec.
func (c *Controller) guestWork(ctx context.Context, sc *tasks.StepContext) (*work, error) {
	g, err := c.guestOf(ctx, sc)
	if err != nil {
		return nil, err
	}
	return c.workOn(ctx, g)
}

// work is what a step needs to act on a guest through its driver.
type work struct {
	g      rackcloud.Guest
	host   rackcloud.Host
	driver Driver
	t      Target
	s      Spec
}

// workOn resolves a placed guest's host, driver, target and spec.
func (c *Controller) workOn(ctx context.Context, g rackcloud.Guest) (*work, error) {
	if g.HostID == "" {
		return nil, tasks.Permanent(fmt.Errorf("%w: guest %s is on no host", rackcloud.ErrConflict, g.Name))
	}
	d := c.cfg.Drivers[g.Kind]
	if d == nil {
		return nil, tasks.Permanent(fmt.Errorf("%w: this server has no driver for %s guests", rackcloud.ErrInvalid, g.Kind))
	}
	h, err := store.GetHost(ctx, c.cfg.Pool, g.HostID)
	if err != nil {
		return nil, err
	}
	t, err := c.targets.For(ctx, h)
	if err != nil {
		return nil, err
	}
	img, err := store.GetImage(ctx, c.cfg.Pool, g.ImageID)
	if err != nil {
		return nil, err
	}
	return &work{g: g, host: h, driver: d, t: t, s: Spec{GuestID: g.ID, Name: g.Name, ProjectID: g.ProjectID, Kind: g.Kind,
		Flavor: g.Flavor, Labels: g.Labels, Image: ImageFrom(img, c.cfg.HTTP)}}, nil
}

// PlaceOutput is what the place step records.
type PlaceOutput struct {
	HostID      string `json:"host_id"`
	HostName    string `json:"host_name,omitempty"`
	Explanation string `json:"explanation"`
}

func (c *Controller) placeStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	g, err := c.guestOf(ctx, sc)
	if err != nil {
		return nil, err
	}
	if g.HostID != "" { // placed by an earlier attempt
		return PlaceOutput{HostID: g.HostID, Explanation: g.Placement}, nil
	}
	if _, err := store.SetGuestState(ctx, c.cfg.Pool, g.ID, rackcloud.GuestCreating, "", nil); err != nil {
		return nil, err
	}
	d, err := c.place(ctx, g)
	var nf *NoFitError
	if errors.As(err, &nf) {
		msg := nf.Explanation.Summary
		if !strings.HasPrefix(msg, "no host fits") {
			msg = "no host fits: " + msg
		}
		_ = store.SetGuestPlacement(ctx, c.cfg.Pool, g.ID, msg)
		return nil, tasks.Permanent(fmt.Errorf("%w: %s", rackcloud.ErrConflict, msg))
	}
	if err != nil {
		return nil, err
	}
	name := ""
	if h := c.keeper.host(d.HostID); h != nil {
		name = h.Name
	}
	_ = store.AddGuestEvent(ctx, c.cfg.Pool, g.ID, "placed", d.Explain())
	return PlaceOutput{HostID: d.HostID, HostName: name, Explanation: d.Explain()}, nil
}

// unplaceStep compensates a failed create: the claim is released and the
// guest is failed with the reason (its row and quota stay until it is
// deleted).
func (c *Controller) unplaceStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	g, err := c.guestOf(ctx, sc)
	if err != nil {
		return nil, err
	}
	if err := store.ReleaseHost(ctx, c.cfg.Pool, g.ID); err != nil {
		return nil, err
	}
	reason := g.Placement
	if g.HostID != "" || reason == "" {
		reason = "guest.create failed and was undone (task " + sc.TaskID + ")"
		if c.engine != nil {
			if info, err := c.engine.Get(ctx, sc.TaskID); err == nil && info.Error != "" {
				reason += ": " + info.Error
			}
		}
	}
	_, err = store.SetGuestState(ctx, c.cfg.Pool, g.ID, rackcloud.GuestFailed, reason, nil)
	return nil, err
}

func (c *Controller) diskStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	g, err := c.guestOf(ctx, sc)
	if err != nil {
		return nil, err
	}
	child := tasks.ChildSpec{Key: "disk", Kind: rackcloud.KindGuestDisk, Target: "guest/" + g.ID + "/disk",
		Params: rackcloud.GuestTaskParams{GuestID: g.ID}}
	if g.Kind == rackcloud.GuestBareMetal {
		child = bareMetalDisk(g)
	}
	id, err := sc.SpawnChild(ctx, child)
	if err != nil {
		return nil, err
	}
	return map[string]string{"task_id": id}, nil
}

func (c *Controller) prepareStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	w, err := c.guestWork(ctx, sc)
	if err != nil {
		return nil, err
	}
	g := w.g
	if err := w.driver.Prepare(ctx, w.t, w.s); err != nil {
		return nil, permanentIfInvalid(fmt.Errorf("prepare %s on %s: %w", g.Name, w.host.Name, err))
	}
	return map[string]string{"image": w.s.Image.Name, "host": w.host.Name}, nil
}

func (c *Controller) configureStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	w, err := c.guestWork(ctx, sc)
	if err != nil {
		return nil, err
	}
	g := w.g
	handle, err := w.driver.Create(ctx, w.t, w.s)
	if err != nil {
		return nil, permanentIfInvalid(fmt.Errorf("create %s on %s: %w", g.Name, w.host.Name, err))
	}
	if _, err := store.SetGuestState(ctx, c.cfg.Pool, g.ID, g.State, g.StateReason, &handle); err != nil {
		return nil, err
	}
	return map[string]string{"handle": handle}, nil
}

func (c *Controller) startStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	g, err := c.guestOf(ctx, sc)
	if err != nil {
		return nil, err
	}
	if sc.Kind == rackcloud.KindGuestMigrate {
		var src stopOutput
		if err := sc.Output(StepStopSource, &src); err == nil && !src.WasRunning {
			_, err := store.SetGuestState(ctx, c.cfg.Pool, g.ID, rackcloud.GuestStopped, "", nil)
			return map[string]string{"start": "skipped: the guest was stopped before it moved"}, err
		}
	}
	w, err := c.workOn(ctx, g)
	if err != nil {
		return nil, err
	}
	if err := w.driver.Start(ctx, w.t, w.s); err != nil {
		return nil, permanentIfInvalid(fmt.Errorf("start %s on %s: %w", g.Name, w.host.Name, err))
	}
	o, err := w.driver.Observe(ctx, w.t, w.s)
	if err != nil {
		return nil, err
	}
	c.observe(ctx, g, o)
	if o.State != ObservedRunning {
		return nil, fmt.Errorf("%s on %s did not stay up: %s %s", g.Name, w.host.Name, o.State, o.Detail)
	}
	if _, err := store.SetGuestState(ctx, c.cfg.Pool, g.ID, rackcloud.GuestRunning, "", nil); err != nil {
		return nil, err
	}
	return map[string]string{"host": w.host.Name, "observed": string(o.State)}, nil
}

func (c *Controller) stopStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	w, err := c.guestWork(ctx, sc)
	if err != nil {
		return nil, err
	}
	g := w.g
	if err := w.driver.Stop(ctx, w.t, w.s, c.cfg.StopGrace); err != nil {
		return nil, permanentIfInvalid(fmt.Errorf("stop %s on %s: %w", g.Name, w.host.Name, err))
	}
	if o, err := w.driver.Observe(ctx, w.t, w.s); err == nil {
		g.State = rackcloud.GuestStopped
		c.observe(ctx, g, o)
	}
	_, err = store.SetGuestState(ctx, c.cfg.Pool, g.ID, rackcloud.GuestStopped, "", nil)
	return nil, err
}

func (c *Controller) rebootStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	w, err := c.guestWork(ctx, sc)
	if err != nil {
		return nil, err
	}
	g := w.g
	if err := w.driver.Reboot(ctx, w.t, w.s); err != nil {
		return nil, permanentIfInvalid(fmt.Errorf("reboot %s on %s: %w", g.Name, w.host.Name, err))
	}
	_, err = store.SetGuestState(ctx, c.cfg.Pool, g.ID, rackcloud.GuestRunning, "", nil)
	return nil, err
}

// destroyStep removes the guest from its host (create's compensation and
// delete's first step); a guest on no host has nothing to remove.
func (c *Controller) destroyStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	g, err := c.guestOf(ctx, sc)
	if err != nil {
		if tasks.IsPermanent(err) && errors.Is(err, rackcloud.ErrNotFound) {
			return nil, nil // already gone
		}
		return nil, err
	}
	if g.HostID == "" {
		return nil, nil
	}
	w, err := c.workOn(ctx, g)
	if err != nil {
		return nil, err
	}
	if err := w.driver.Delete(ctx, w.t, w.s); err != nil {
		return nil, fmt.Errorf("delete %s on %s: %w", g.Name, w.host.Name, err)
	}
	if g.Kind == rackcloud.GuestBareMetal {
		return c.deprovisionBareMetal(ctx, sc, w)
	}
	return map[string]string{"host": w.host.Name}, nil
}

func (c *Controller) releaseStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	g, err := c.guestOf(ctx, sc)
	if err != nil {
		return nil, err
	}
	return nil, store.ReleaseHost(ctx, c.cfg.Pool, g.ID)
}

func (c *Controller) forgetStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	g, err := c.guestOf(ctx, sc)
	if err != nil {
		if errors.Is(err, rackcloud.ErrNotFound) {
			return nil, nil
		}
		return nil, err
	}
	if err := store.DeleteGuest(ctx, c.cfg.Pool, g.ID, g.Version); err != nil {
		return nil, err
	}
	c.m.crashes.DeleteLabelValues(g.ID, g.Name, g.ProjectID)
	return nil, nil
}

// observe records what a driver saw of a guest. A guest that is not
// running though it should be crashed, whatever its exit looked like.
func (c *Controller) observe(ctx context.Context, g rackcloud.Guest, o Observed) {
	if o.State == ObservedStopped && g.State == rackcloud.GuestRunning {
		o.State = ObservedCrashed
	}
	changed, err := store.RecordGuestObserved(ctx, c.cfg.Pool, g.ID, string(o.State), o.Detail)
	if err != nil {
		c.log.Warn("record observed guest state", "guest", g.ID, "err", err)
		return
	}
	if changed {
		c.m.observed.WithLabelValues(string(o.State)).Inc()
		if o.State == ObservedCrashed {
			c.m.crashes.WithLabelValues(g.ID, g.Name, g.ProjectID).Inc()
		}
	}
}

// permanentIfInvalid makes an error no retry can cure (a bad image, a
// flavor the daemon refuses) fail the step at once.
func permanentIfInvalid(err error) error {
	if errors.Is(err, rackcloud.ErrInvalid) || errors.Is(err, ErrChecksum) {
		return tasks.Permanent(err)
	}
	return err
}
