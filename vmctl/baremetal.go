package vmctl

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// A bare-metal guest is the whole of a ready bm host (placement lets a bm
// host hold one guest). Its disk step installs the guest's image on the
// host through the provisioner (host.install-guest: PXE into the
// installer through the BMC, the agent writes the image, boot the disk);
// start, stop and reboot are the host's power through its BMC; delete
// powers it off, deprovisions the host (the agent wipes its disks) and
// only then releases the claim, so no one else gets the host with the
// tenant's bytes on it. A tenant's image need not run rackcloud's agent,
// so a bare-metal guest is running when its BMC reports power on.

// HostPower is what the bare-metal driver needs of a host's BMC
// (provisioner.ManagedBMC).
type HostPower interface {
	// PowerState reads the host's power.
	PowerState(ctx context.Context, hostID string) (rackcloud.PowerState, error)
	// SetPower changes the host's power (bmc.PowerOn, PowerOff,
	// PowerSoft).
	SetPower(ctx context.Context, hostID string, a bmc.PowerAction) error
	// DiskBoot sets the next boot to the host's disk and cycles its power
	// (powers it on when off).
	DiskBoot(ctx context.Context, hostID string) error
}

// DefaultPowerWait bounds how long the bare-metal driver waits for a BMC
// to report the power it asked for.
const DefaultPowerWait = 2 * time.Minute

// BareMetal runs bare-metal guests through their hosts' BMCs.
type BareMetal struct {
	// Power reaches the hosts' BMCs; nil fails every call.
	Power HostPower
	// Poll is how often a power change is checked (0: 2 s).
	Poll time.Duration
	// Wait bounds a power change (0: DefaultPowerWait).
	Wait time.Duration
}

var _ Driver = (*BareMetal)(nil)

// ErrNoBMC says this server has no BMC access for bare-metal guests.
var ErrNoBMC = fmt.Errorf("%w: this server has no BMC access for bare-metal guests", rackcloud.ErrInvalid)

func (b *BareMetal) power() (HostPower, error) {
	if b == nil || b.Power == nil {
		return nil, ErrNoBMC
	}
	return b.Power, nil
}

// state reads the power of t's host.
func (b *BareMetal) state(ctx context.Context, t Target) (HostPower, rackcloud.PowerState, error) {
	p, err := b.power()
	if err != nil {
		return nil, rackcloud.PowerUnknown, err
	}
	st, err := p.PowerState(ctx, t.HostID)
	if err != nil {
		return nil, st, fmt.Errorf("power state of host %s: %w", t.HostID, err)
	}
	return p, st, nil
}

// Prepare is not how a bare-metal guest gets its disk: guest.create's
// disk step runs host.install-guest instead.
func (b *BareMetal) Prepare(context.Context, Target, Spec) error {
	return fmt.Errorf("%w: a bare-metal guest's image is installed by %s, not by its driver", rackcloud.ErrInvalid,
		rackcloud.KindHostInstallGuest)
}

// Create makes nothing (the installed host is the guest); the handle
// names the host.
func (b *BareMetal) Create(_ context.Context, t Target, _ Spec) (string, error) {
	return "host/" + t.HostID, nil
}

// Start powers the host on from its disk unless it is on, and waits for
// the BMC to report it on.
func (b *BareMetal) Start(ctx context.Context, t Target, _ Spec) error {
	p, st, err := b.state(ctx, t)
	if err != nil || st == rackcloud.PowerOn {
		return err
	}
	if err := p.DiskBoot(ctx, t.HostID); err != nil {
		return fmt.Errorf("power host %s on from its disk: %w", t.HostID, err)
	}
	return b.waitPower(ctx, p, t.HostID, rackcloud.PowerOn, b.wait())
}

// Stop asks the host's OS to shut down (ACPI), waits up to grace, then
// cuts the power.
func (b *BareMetal) Stop(ctx context.Context, t Target, _ Spec, grace time.Duration) error {
	p, st, err := b.state(ctx, t)
	if err != nil || st == rackcloud.PowerOff {
		return err
	}
	if grace > 0 && p.SetPower(ctx, t.HostID, bmc.PowerSoft) == nil {
		if b.waitPower(ctx, p, t.HostID, rackcloud.PowerOff, grace) == nil {
			return nil
		}
	}
	return b.powerOff(ctx, p, t.HostID)
}

// Reboot boots the host from its disk again (a power cycle).
func (b *BareMetal) Reboot(ctx context.Context, t Target, _ Spec) error {
	p, err := b.power()
	if err != nil {
		return err
	}
	if err := p.DiskBoot(ctx, t.HostID); err != nil {
		return fmt.Errorf("power-cycle host %s: %w", t.HostID, err)
	}
	return b.waitPower(ctx, p, t.HostID, rackcloud.PowerOn, b.wait())
}

// Delete powers the host off; the guest.delete task then deprovisions it.
func (b *BareMetal) Delete(ctx context.Context, t Target, _ Spec) error {
	p, err := b.power()
	if err != nil {
		return err
	}
	return b.powerOff(ctx, p, t.HostID)
}

// Observe reads the host's power: on is running, off stopped.
func (b *BareMetal) Observe(ctx context.Context, t Target, _ Spec) (Observed, error) {
	_, st, err := b.state(ctx, t)
	if err != nil {
		return Observed{}, err
	}
	o := Observed{Handle: "host/" + t.HostID, Detail: "BMC reports power " + string(st)}
	switch st {
	case rackcloud.PowerOn:
		o.State = ObservedRunning
	case rackcloud.PowerOff:
		o.State = ObservedStopped
	default:
		return Observed{}, fmt.Errorf("host %s: the BMC reports power %q", t.HostID, st)
	}
	return o, nil
}

func (b *BareMetal) powerOff(ctx context.Context, p HostPower, hostID string) error {
	if err := p.SetPower(ctx, hostID, bmc.PowerOff); err != nil {
		return fmt.Errorf("power host %s off: %w", hostID, err)
	}
	return b.waitPower(ctx, p, hostID, rackcloud.PowerOff, b.wait())
}

func (b *BareMetal) wait() time.Duration {
	if b.Wait > 0 {
		return b.Wait
	}
	return DefaultPowerWait
}

// errPowerWait says a BMC did not report the power asked for in time.
var errPowerWait = errors.New("the BMC did not report the power asked for")

// waitPower polls the host's power until it is want, for up to within.
func (b *BareMetal) waitPower(ctx context.Context, p HostPower, hostID string, want rackcloud.PowerState, within time.Duration) error {
	ctx, cancel := context.WithTimeoutCause(ctx, within, fmt.Errorf("%w (%s) within %s", errPowerWait, want, within))
	defer cancel()
	poll := b.Poll
	if poll <= 0 {
		poll = 2 * time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	last := rackcloud.PowerUnknown
	for {
		st, err := p.PowerState(ctx, hostID)
		if err == nil && st == want {
			return nil
		}
		if err == nil {
			last = st
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("host %s reports power %s: %w", hostID, last, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// bareMetalDisk is guest.create's disk sub-task for a bare-metal guest:
// the provisioner installs the guest's image on the host it claimed (the
// child's target is the host, so no other host task runs meanwhile).
func bareMetalDisk(g rackcloud.Guest) tasks.ChildSpec {
	return tasks.ChildSpec{Key: "disk", Kind: rackcloud.KindHostInstallGuest, Target: "host/" + g.HostID,
		Params: rackcloud.HostInstallGuestParams{HostID: g.HostID, GuestID: g.ID, ImageID: g.ImageID}}
}

// deprovisionBareMetal wipes a bare-metal guest's host once its driver
// powered it off: as a sub-task of guest.delete (its next step releases
// the claim only after the wipe), or, in a create's compensation, which
// may not spawn children and releases the claim next, as a task of its
// own submitted in the transaction that moves a ready host to
// deprovisioning, so that it is never ready and unclaimed with the
// tenant's bytes on its disk.
func (c *Controller) deprovisionBareMetal(ctx context.Context, sc *tasks.StepContext, w *work) (any, error) {
	spec := tasks.ChildSpec{Key: "deprovision", Kind: rackcloud.KindHostDeprovision, Target: "host/" + w.host.ID,
		Params: rackcloud.HostTaskParams{HostID: w.host.ID}}
	if sc.Phase == tasks.PhaseRun {
		id, err := sc.SpawnChild(ctx, spec)
		if err != nil {
			return nil, err
		}
		return map[string]string{"host": w.host.Name, "deprovision_task": id}, nil
	}
	if c.engine == nil {
		return nil, errors.New("no task engine to deprovision the host")
	}
	if w.host.State == rackcloud.HostDeprovisioning {
		return map[string]string{"host": w.host.Name, "deprovision": "already deprovisioning"}, nil
	}
	tx, err := c.cfg.Pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	info, err := c.engine.Submit(ctx, tx, tasks.Submission{Kind: spec.Kind, Target: spec.Target, Params: spec.Params})
	if err != nil {
		return nil, fmt.Errorf("deprovision host %s: %w", w.host.Name, err)
	}
	if rackcloud.HostCan(w.host.State, rackcloud.HostEvDeprovision) {
		if _, err := store.TransitionHost(ctx, tx, w.host.ID, store.Transition{From: w.host.State, To: rackcloud.HostDeprovisioning,
			Reason: "bare-metal guest " + w.g.Name + " undone (task " + sc.TaskID + ")"}); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	c.log.Info("bare-metal guest undone: its host is deprovisioned", "guest", w.g.ID, "host", w.host.Name, "task", info.ID)
	return map[string]string{"host": w.host.Name, "deprovision_task": info.ID}, nil
}
