package provisioner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// Step names of host.install-guest (it shares prepare, pxe-power-on,
// await-install and boot-disk with host.provision).
const (
	StepInstalling   = "installing"
	StepAwaitPowerOn = "await-power-on"
)

// PowerReader is a BMC that reads a host's power state (ManagedBMC). A
// guest install confirms with it that the installed disk booted powered
// on; without it the acknowledged disk boot is taken as the answer.
type PowerReader interface {
	PowerState(ctx context.Context, hostID string) (rackcloud.PowerState, error)
}

// powerRecheck is how often a guest install asks the BMC again for the
// power state it waits for.
const powerRecheck = 3 * time.Second

// installGuestKind installs a bare-metal guest's image on the ready bm
// host the guest claimed, with host.provision's machinery: ready ->
// provisioning; an install plan for the guest's image (a new host token,
// no TLS: a tenant's image runs no rackcloud daemon); PXE and power on
// into the installer through the BMC; wait for it to write and read back
// the image; boot the disk; the BMC reports power on; -> ready. The host
// keeps its role and its own image (a retry of a host that failed here
// re-provisions it as a bm host). A tenant's image need not run
// rackcloud's host agent, so its heartbeat is noted, not awaited.
func (p *Provisioner) installGuestKind() tasks.Kind {
	return tasks.Kind{
		Name: rackcloud.KindHostInstallGuest,
		Validate: func(raw json.RawMessage) error {
			var ip rackcloud.HostInstallGuestParams
			if err := json.Unmarshal(raw, &ip); err != nil || !store.ValidID(ip.HostID) || !store.ValidID(ip.GuestID) ||
				!store.ValidID(ip.ImageID) {
				return errors.New(`want {"host_id": <uuid>, "guest_id": <uuid>, "image_id": <uuid>}`)
			}
			return nil
		},
		Steps: []tasks.Step{
			{Name: StepInstalling, Run: p.installingGuest, Undo: p.failHost(rackcloud.HostProvisioning, StepInstalling)},
			{Name: StepPrepare, Run: p.prepareGuest},
			{Name: StepPXEPowerOn, Run: p.installerBoot},
			{Name: StepAwaitInstall, Run: p.awaitInstall, WaitTimeout: p.cfg.InstallTimeout, MaxAttempts: 5},
			{Name: StepBootDisk, Run: p.bootDisk},
			{Name: StepAwaitPowerOn, Run: p.awaitPowerOn, WaitTimeout: p.cfg.FirstBootTimeout, MaxAttempts: 5},
			{Name: StepReady, Run: p.guestInstalled},
		},
	}
}

// installee reads a host.install-guest task's params and its host.
func (p *Provisioner) installee(ctx context.Context, sc *tasks.StepContext) (rackcloud.HostInstallGuestParams, rackcloud.Host, error) {
	return taskHost[rackcloud.HostInstallGuestParams](ctx, p, sc, func(ip rackcloud.HostInstallGuestParams) string { return ip.HostID })
}

// installingGuest checks that the guest holds its claim on a bm host and
// moves the host from ready to provisioning.
func (p *Provisioner) installingGuest(ctx context.Context, sc *tasks.StepContext) (any, error) {
	ip, h, err := p.installee(ctx, sc)
	if err != nil {
		return nil, err
	}
	g, err := store.GetGuest(ctx, p.cfg.Pool, ip.GuestID)
	if err != nil {
		return nil, tasks.Permanent(fmt.Errorf("guest %s: %w", ip.GuestID, err))
	}
	if g.HostID != h.ID {
		return nil, tasks.Permanent(fmt.Errorf("%w: guest %s does not hold host %s", rackcloud.ErrConflict, g.Name, h.Name))
	}
	if h.Role != rackcloud.RoleBareMetal {
		return nil, tasks.Permanent(fmt.Errorf("%w: host %s is a %q host, not bm", rackcloud.ErrConflict, h.Name, h.Role))
	}
	return p.toWorking(rackcloud.HostProvisioning, rackcloud.HostEvInstallGuest)(ctx, sc)
}

// prepareGuest makes the install plan of the guest's image.
func (p *Provisioner) prepareGuest(ctx context.Context, sc *tasks.StepContext) (any, error) {
	ip, h, err := p.installee(ctx, sc)
	if err != nil {
		return nil, err
	}
	im, err := store.GetImage(ctx, p.cfg.Pool, ip.ImageID)
	if err != nil {
		return nil, tasks.Permanent(err)
	}
	if err := p.checkPlan(h, im); err != nil {
		return nil, err
	}
	return p.savePlan(ctx, sc.TaskID, h, rackcloud.RoleBareMetal, im)
}

// poweredOn is the output of the power-on wait.
type poweredOn struct {
	Power rackcloud.PowerState `json:"power"`
	// Heartbeat says the installed image's agent called in since the
	// disk boot (an image with rackcloud's agent does).
	Heartbeat bool `json:"heartbeat"`
}

// awaitPowerOn waits for the BMC to report the host on after its disk
// boot: what "started" means for an image rackcloud knows nothing more
// of.
func (p *Provisioner) awaitPowerOn(ctx context.Context, sc *tasks.StepContext) (any, error) {
	_, h, err := p.installee(ctx, sc)
	if err != nil {
		return nil, err
	}
	var pw powered
	if err := sc.Output(StepBootDisk, &pw); err != nil {
		return nil, err
	}
	out := poweredOn{Power: rackcloud.PowerUnknown}
	if r, ok := p.cfg.BMC.(PowerReader); ok {
		st, err := r.PowerState(ctx, h.ID)
		switch {
		case err != nil && Classify(err) == rackcloud.FailBMCRefused:
			return nil, tasks.Permanent(reasoned(rackcloud.FailBMCRefused, err))
		case err != nil:
			return nil, tasks.Snooze(powerRecheck, "the BMC to report the power state (last: "+oneLine(err.Error())+")")
		case st != rackcloud.PowerOn:
			return nil, tasks.Snooze(powerRecheck, "the BMC to report power on (it reports "+string(st)+")")
		}
		out.Power = st
	}
	_, err = store.LatestBootEvent(ctx, p.cfg.Pool, h.ID, string(rackcloud.BootEventHeartbeat), pw.At)
	out.Heartbeat = err == nil
	return out, nil
}

// guestInstalled returns the host, now running the guest's image, to
// ready: the guest's claim holds it, so placement gives it to no one else.
func (p *Provisioner) guestInstalled(ctx context.Context, sc *tasks.StepContext) (any, error) {
	ip, h, err := p.installee(ctx, sc)
	if err != nil {
		return nil, err
	}
	if h.State != rackcloud.HostReady {
		if _, err := store.TransitionHost(ctx, p.cfg.Pool, h.ID, store.Transition{From: rackcloud.HostProvisioning,
			To: rackcloud.HostReady, Reason: "guest " + ip.GuestID + " installed (task " + sc.TaskID + ")"}); err != nil {
			if store.IsStaleState(err) {
				return nil, tasks.Permanent(err)
			}
			return nil, err
		}
	}
	var st started
	if err := sc.Output(StepInstalling, &st); err == nil {
		if now, err := store.Now(ctx, p.cfg.Pool); err == nil {
			p.m.phase.WithLabelValues("guest_install", "ok").Observe(now.Sub(st.At).Seconds())
		}
	}
	p.log.Info("guest installed on its host", "host", h.Name, "guest", ip.GuestID, "image", ip.ImageID)
	return map[string]string{"host": h.Name}, nil
}
