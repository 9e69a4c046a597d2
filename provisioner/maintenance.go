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

// Step names of host.drain and host.activate.
const (
	StepDraining    = "draining"
	StepEvacuate    = "evacuate"
	StepAwaitGuests = "await-guests"
	StepMaintenance = "maintenance"
	StepActivate    = "activate"
)

// DefaultDrainTimeout bounds the wait for a draining host's guests to
// stop or move.
const DefaultDrainTimeout = time.Hour

func validMaintenanceParams(raw json.RawMessage) error {
	var mp rackcloud.HostMaintenanceParams
	if err := json.Unmarshal(raw, &mp); err != nil || !store.ValidID(mp.HostID) {
		return errors.New(`want {"host_id": <uuid>, "reason": "..."}`)
	}
	return nil
}

// drainKind takes a ready host out of service: ready -> draining (no new
// guests); its guests migrated away (a live host.evacuate sub-task,
// unless NoEvacuate); wait until none is left running; -> maintenance. A
// guest that could not move fails the evacuation and so the drain (the
// host is failed, draining: retry once there is room, or move it by hand).
func (p *Provisioner) drainKind() tasks.Kind {
	return tasks.Kind{
		Name:     rackcloud.KindHostDrain,
		Validate: validMaintenanceParams,
		Steps: []tasks.Step{
			{Name: StepDraining, Run: p.drainStart, Undo: p.failHost(rackcloud.HostDraining, StepDraining)},
			{Name: StepEvacuate, Run: p.drainEvacuate},
			{Name: StepAwaitGuests, Run: p.awaitGuests, WaitTimeout: DefaultDrainTimeout, MaxAttempts: 5},
			{Name: StepMaintenance, Run: p.toMaintenance},
		},
	}
}

// drainStart moves the host into draining and keeps new guests off it.
func (p *Provisioner) drainStart(ctx context.Context, sc *tasks.StepContext) (any, error) {
	out, err := p.toWorking(rackcloud.HostDraining, rackcloud.HostEvDrain)(ctx, sc)
	if err != nil {
		return nil, err
	}
	var mp rackcloud.HostMaintenanceParams
	if err := sc.Params(&mp); err != nil {
		return nil, err
	}
	return out, store.SetHostMaintenance(ctx, p.cfg.Pool, mp.HostID, true)
}

// drainEvacuate spawns the live evacuation of the draining host.
func (p *Provisioner) drainEvacuate(ctx context.Context, sc *tasks.StepContext) (any, error) {
	var mp rackcloud.HostMaintenanceParams
	if err := sc.Params(&mp); err != nil {
		return nil, err
	}
	if mp.NoEvacuate {
		return map[string]string{"evacuate": "skipped: no_evacuate"}, nil
	}
	n, err := store.CountGuestsOnHost(ctx, p.cfg.Pool, mp.HostID)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return map[string]string{"evacuate": "no guest on the host"}, nil
	}
	id, err := sc.SpawnChild(ctx, tasks.ChildSpec{Key: "evacuate", Kind: rackcloud.KindHostEvacuate, Target: "host/" + mp.HostID + "/evacuate",
		Params: rackcloud.HostEvacuateParams{HostID: mp.HostID}})
	if errors.Is(err, rackcloud.ErrConflict) {
		// An operator's evacuation of the host is at work: the next
		// step waits for its guests to leave.
		return map[string]string{"evacuate": "an evacuation of the host is at work already"}, nil
	}
	if err != nil {
		return nil, err
	}
	return map[string]string{"evacuate_task": id}, nil
}

func (p *Provisioner) awaitGuests(ctx context.Context, sc *tasks.StepContext) (any, error) {
	var mp rackcloud.HostMaintenanceParams
	if err := sc.Params(&mp); err != nil {
		return nil, err
	}
	n, err := store.ActiveGuestsOn(ctx, p.cfg.Pool, mp.HostID)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		return nil, tasks.Snooze(p.cfg.Recheck, fmt.Sprintf("%d guest(s) on the host to stop or move away", n))
	}
	return nil, nil
}

func (p *Provisioner) toMaintenance(ctx context.Context, sc *tasks.StepContext) (any, error) {
	var mp rackcloud.HostMaintenanceParams
	if err := sc.Params(&mp); err != nil {
		return nil, err
	}
	_, err := store.TransitionHost(ctx, p.cfg.Pool, mp.HostID, store.Transition{From: rackcloud.HostDraining,
		To: rackcloud.HostMaintenance, Reason: mp.Reason})
	if store.IsStaleState(err) {
		h, gerr := store.GetHost(ctx, p.cfg.Pool, mp.HostID)
		if gerr == nil && h.State == rackcloud.HostMaintenance {
			return nil, nil // this step ran before
		}
		return nil, tasks.Permanent(err)
	}
	return nil, err
}

// activateKind returns a host in maintenance to service: -> ready, new
// guests allowed again.
func (p *Provisioner) activateKind() tasks.Kind {
	return tasks.Kind{
		Name:     rackcloud.KindHostActivate,
		Validate: validMaintenanceParams,
		Steps: []tasks.Step{{Name: StepActivate, Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			var mp rackcloud.HostMaintenanceParams
			if err := sc.Params(&mp); err != nil {
				return nil, err
			}
			h, err := store.GetHost(ctx, p.cfg.Pool, mp.HostID)
			if err != nil {
				return nil, tasks.Permanent(err)
			}
			if h.State == rackcloud.HostMaintenance {
				if _, err := store.TransitionHost(ctx, p.cfg.Pool, h.ID, store.Transition{From: rackcloud.HostMaintenance,
					To: rackcloud.HostReady, Reason: mp.Reason}); err != nil {
					if store.IsStaleState(err) {
						return nil, tasks.Permanent(err)
					}
					return nil, err
				}
			} else if h.State != rackcloud.HostReady {
				return nil, tasks.Permanent(fmt.Errorf("%w: host %s is %s, not in maintenance", rackcloud.ErrConflict, h.Name, h.State))
			}
			return nil, store.SetHostMaintenance(ctx, p.cfg.Pool, h.ID, false)
		}}},
	}
}
