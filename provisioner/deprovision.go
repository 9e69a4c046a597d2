package provisioner

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// Step names of host.deprovision.
const (
	StepDeprovisioning = "deprovisioning"
	StepAwaitWipe      = "await-wipe"
	StepWiped          = "wiped-available"
)

// deprovisionKind wipes a host and returns it to available: available,
// ready or maintenance (deprovision), failed (reset) -> deprovisioning;
// PXE and power on through the BMC into the inspection image, whose agent,
// booted for deprovisioning, zeroes both ends of every disk (partition
// tables, GPT backup, the start of the file systems) and reports what it
// wiped; -> available, powered off.
func (p *Provisioner) deprovisionKind() tasks.Kind {
	return tasks.Kind{
		Name:     rackcloud.KindHostDeprovision,
		Validate: validHostParams,
		Steps: []tasks.Step{
			{Name: StepDeprovisioning, Run: p.toWorking(rackcloud.HostDeprovisioning, rackcloud.HostEvDeprovision, rackcloud.HostEvReset),
				Undo: p.failHost(rackcloud.HostDeprovisioning, StepDeprovisioning)},
			{Name: StepPXEPowerOn, Run: p.pxePowerOn},
			{Name: StepAwaitWipe, Run: p.awaitWipe, WaitTimeout: p.cfg.InspectTimeout, MaxAttempts: 5},
			{Name: StepWiped, Run: p.wipedToAvailable},
		},
	}
}

func validHostParams(raw json.RawMessage) error {
	var hp rackcloud.HostTaskParams
	if err := json.Unmarshal(raw, &hp); err != nil || !store.ValidID(hp.HostID) {
		return errors.New("want {\"host_id\": <uuid>}")
	}
	return nil
}

// awaitWipe waits for the report of the boot the task caused in which the
// agent wiped the disks.
func (p *Provisioner) awaitWipe(ctx context.Context, sc *tasks.StepContext) (any, error) {
	_, h, err := p.enrollee(ctx, sc)
	if err != nil {
		return nil, err
	}
	var pw powered
	if err := sc.Output(StepPXEPowerOn, &pw); err != nil {
		return nil, err
	}
	inv, err := p.latestReport(ctx, h.ID, pw.At)
	switch {
	case errors.Is(err, rackcloud.ErrNotFound):
		return nil, tasks.Snooze(p.cfg.Recheck, "the agent to wipe the disks")
	case err != nil && !errors.Is(err, errBadReport):
		return nil, err
	}
	if err != nil || (inv.Wiped == nil && len(inv.Disks) > 0) {
		p.log.Warn("deprovisioning host reported without wiping", "host", h.Name, "err", err)
		return nil, tasks.Snooze(p.cfg.Recheck, "the agent to wipe the disks (its last report did not)")
	}
	if now, err := store.Now(ctx, p.cfg.Pool); err == nil {
		p.m.phase.WithLabelValues("wipe", "ok").Observe(now.Sub(pw.At).Seconds())
	}
	return map[string]any{"wiped": inv.Wiped}, nil
}

func (p *Provisioner) wipedToAvailable(ctx context.Context, sc *tasks.StepContext) (any, error) {
	_, h, err := p.enrollee(ctx, sc)
	if err != nil {
		return nil, err
	}
	if h.State == rackcloud.HostAvailable {
		return nil, nil // a re-run of this step after its transition
	}
	// Power off before the host reads available: whoever sees it available
	// (an operator, a test, an enroll rule) finds it off and the task a
	// statement from its end, not a minute of BMC calls away.
	if h.BMC != nil && p.cfg.BMC != nil {
		pctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := p.cfg.BMC.PowerOff(pctx, h.ID); err != nil {
			p.log.Warn("deprovisioned host not powered off", "host", h.Name, "err", err)
		}
	}
	if err := store.ClearHostInstall(ctx, p.cfg.Pool, h.ID); err != nil {
		return nil, err
	}
	if _, err := store.TransitionHost(ctx, p.cfg.Pool, h.ID, store.Transition{From: rackcloud.HostDeprovisioning,
		To: rackcloud.HostAvailable}); err != nil {
		if store.IsStaleState(err) {
			return nil, tasks.Permanent(err)
		}
		return nil, err
	}
	p.log.Info("host deprovisioned: available", "host", h.Name)
	return nil, nil
}
