package availability

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// Step names of host.fence.
const (
	StepConfirm  = "confirm"
	StepFence    = "fence"
	StepFail     = "fail-host"
	StepEvacuate = "evacuate"
)

// ErrUnfenced marks a fence that could not be done: the host's guests
// stay where they are, because the host may still run them.
var ErrUnfenced = errors.New("not fenced")

// Verdict is what the confirm step found.
type Verdict struct {
	// Act is true when the host is dead and is to be fenced.
	Act bool `json:"act"`
	// Why says what was found, for people.
	Why  string `json:"why"`
	Host string `json:"host"`
	// State is the host's state when confirmed (fenced from it).
	State rackcloud.HostState `json:"state"`
}

// Fenced is what the fence step records.
type Fenced struct {
	// Power is what the BMC reported before the fence.
	Before rackcloud.PowerState `json:"before"`
	At     time.Time            `json:"at"`
}

// Evacuation is what the evacuate step records.
type Evacuation struct {
	TaskID string `json:"task_id,omitempty"`
	// Guests counts the guests on the host when it was fenced.
	Guests int    `json:"guests"`
	Note   string `json:"note,omitempty"`
}

func (c *Controller) fenceKind() tasks.Kind {
	return tasks.Kind{Name: rackcloud.KindHostFence, Validate: validFenceParams, Steps: []tasks.Step{
		{Name: StepConfirm, Run: c.confirmStep, MaxAttempts: 3},
		{Name: StepFence, Run: c.fenceStep, MaxAttempts: 3},
		{Name: StepFail, Run: c.failStep},
		{Name: StepEvacuate, Run: c.evacuateStep},
	}}
}

func validFenceParams(raw json.RawMessage) error {
	var p rackcloud.HostFenceParams
	if err := json.Unmarshal(raw, &p); err != nil || !store.ValidID(p.HostID) {
		return errors.New(`want {"host_id": <uuid>, "alert": "..."}`)
	}
	return nil
}

func (c *Controller) host(ctx context.Context, sc *tasks.StepContext) (rackcloud.Host, error) {
	var p rackcloud.HostFenceParams
	if err := sc.Params(&p); err != nil {
		return rackcloud.Host{}, err
	}
	h, err := store.GetHost(ctx, c.cfg.Pool, p.HostID)
	if errors.Is(err, rackcloud.ErrNotFound) {
		return h, tasks.Permanent(err)
	}
	return h, err
}

// acting reads the confirm step's verdict and, when it is to act, the
// host as it is now.
func (c *Controller) acting(ctx context.Context, sc *tasks.StepContext) (Verdict, rackcloud.Host, bool, error) {
	var v Verdict
	if err := sc.Output(StepConfirm, &v); err != nil || !v.Act {
		return v, rackcloud.Host{}, false, err
	}
	h, err := c.host(ctx, sc)
	return v, h, err == nil, err
}

// inService are the states from which a dead host is fenced.
func inService(s rackcloud.HostState) bool {
	return rackcloud.HostCan(s, rackcloud.HostEvFence)
}

// confirmStep decides whether the host is dead: in service, its agent
// quiet, and its BMC off or its daemon silent. A BMC that does not answer
// fails the step (and, after its tries, the task): nobody can tell
// whether the host still runs its guests.
func (c *Controller) confirmStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	h, err := c.host(ctx, sc)
	if err != nil {
		return nil, err
	}
	v := Verdict{Host: h.Name, State: h.State}
	if h.State == rackcloud.HostFailed && h.Failure != nil && h.Failure.Reason == rackcloud.FailFenced {
		v.Why = "already fenced (task " + h.Failure.TaskID + ")"
		c.m.fences.WithLabelValues("not_confirmed").Inc()
		return v, nil
	}
	if !inService(h.State) {
		v.Why = fmt.Sprintf("host is %s, not in service: nothing to fence", h.State)
		c.m.fences.WithLabelValues("not_confirmed").Inc()
		return v, nil
	}
	now, err := store.Now(ctx, c.cfg.Pool)
	if err != nil {
		return nil, err
	}
	agent := "no agent heartbeat on record"
	if hb := h.LastHeartbeat; hb != nil {
		age := now.Sub(*hb)
		if age < c.cfg.StaleAfter {
			v.Why = fmt.Sprintf("its agent called in %s ago: the host is up", age.Round(time.Second))
			c.m.fences.WithLabelValues("not_confirmed").Inc()
			return v, nil
		}
		agent = fmt.Sprintf("agent quiet for %s", age.Round(time.Second))
	}
	if h.BMC == nil || c.cfg.BMC == nil {
		c.m.fences.WithLabelValues("failed").Inc()
		err := fmt.Errorf("%w: host %s has no BMC rackcloud can use (%s): its guests stay where they are", ErrUnfenced, h.Name, agent)
		c.audit(ctx, "fenceHost", "host/"+h.ID, store.OutcomeFailure, err.Error())
		return nil, tasks.Permanent(err)
	}
	pctx, cancel := context.WithTimeout(ctx, c.cfg.PowerWait)
	power, err := c.cfg.BMC.PowerState(pctx, h.ID)
	cancel()
	if err != nil {
		if sc.Attempt >= 3 {
			c.m.fences.WithLabelValues("failed").Inc()
			c.audit(ctx, "fenceHost", "host/"+h.ID, store.OutcomeFailure, "BMC does not answer: "+err.Error())
		}
		return nil, fmt.Errorf("%w: host %s's BMC does not answer (%v); %s: its guests stay where they are (the host may still run them)",
			ErrUnfenced, h.Name, err, agent)
	}
	if power == rackcloud.PowerOff {
		v.Act, v.Why = true, agent+"; the BMC reports power off"
		return v, nil
	}
	rctx, cancel := context.WithTimeout(ctx, c.cfg.ReachTimeout)
	var rerr error = errors.New("no daemon check configured")
	if c.cfg.Reach != nil {
		rerr = c.cfg.Reach.Reach(rctx, h)
	}
	cancel()
	if rerr == nil {
		v.Why = agent + "; but its daemon answers: the host is up"
		c.m.fences.WithLabelValues("not_confirmed").Inc()
		return v, nil
	}
	v.Act, v.Why = true, fmt.Sprintf("%s; the BMC reports power %s and the daemon does not answer (%v)", agent, power, rerr)
	return v, nil
}

// fenceStep powers the host off through its BMC and waits until the BMC
// reports off.
func (c *Controller) fenceStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	v, h, act, err := c.acting(ctx, sc)
	if err != nil || !act {
		return nil, err
	}
	fail := func(err error) error {
		err = fmt.Errorf("%w: host %s: %v: its guests stay where they are (the host may still run them)", ErrUnfenced, h.Name, err)
		if sc.Attempt >= 3 {
			c.m.fences.WithLabelValues("failed").Inc()
			c.audit(ctx, "fenceHost", "host/"+h.ID, store.OutcomeFailure, err.Error())
		}
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, c.cfg.PowerWait)
	defer cancel()
	before, err := c.cfg.BMC.PowerState(pctx, h.ID)
	if err != nil {
		return nil, fail(fmt.Errorf("read power through the BMC: %w", err))
	}
	if before != rackcloud.PowerOff {
		if err := c.cfg.BMC.SetPower(pctx, h.ID, bmc.PowerOff); err != nil {
			return nil, fail(fmt.Errorf("power off through the BMC: %w", err))
		}
	}
	for p := before; p != rackcloud.PowerOff; {
		select {
		case <-pctx.Done():
			return nil, fail(fmt.Errorf("the BMC still reports power %s %s after power off", p, c.cfg.PowerWait))
		case <-time.After(500 * time.Millisecond):
		}
		if p, err = c.cfg.BMC.PowerState(pctx, h.ID); err != nil {
			return nil, fail(fmt.Errorf("read power back through the BMC: %w", err))
		}
	}
	if err := store.RecordFencedPower(ctx, c.cfg.Pool, h.ID); err != nil {
		return nil, err
	}
	now, _ := store.Now(ctx, c.cfg.Pool)
	c.audit(ctx, "fenceHost", "host/"+h.ID, store.OutcomeSuccess, fmt.Sprintf("powered off through the BMC (it reported %s): %s", before, v.Why))
	c.log.Warn("host fenced: powered off through its BMC", "host", h.Name, "why", v.Why)
	return Fenced{Before: before, At: now}, nil
}

// failStep makes the fenced host failed (reason fenced): nothing is
// placed on it any more.
func (c *Controller) failStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	v, h, act, err := c.acting(ctx, sc)
	if err != nil || !act {
		return nil, err
	}
	if h.State == rackcloud.HostFailed && h.Failure != nil && h.Failure.Reason == rackcloud.FailFenced {
		return nil, nil // a re-run after the transition
	}
	if _, err := rackcloud.NextHost(rackcloud.HostLife{State: h.State}, rackcloud.HostEvFence); err != nil {
		return nil, tasks.Permanent(fmt.Errorf("host %s was fenced (powered off) but is %s now: %w", h.Name, h.State, err))
	}
	_, err = store.TransitionHost(ctx, c.cfg.Pool, h.ID, store.Transition{From: h.State, To: rackcloud.HostFailed,
		Failure: &rackcloud.HostFailure{Reason: rackcloud.FailFenced, Step: StepFence, In: h.State, TaskID: sc.TaskID,
			Detail: "fenced by the availability controller: " + v.Why}})
	if store.IsStaleState(err) {
		return nil, err // moved meanwhile: look again
	}
	if err != nil {
		return nil, err
	}
	c.audit(ctx, "failHost", "host/"+h.ID, store.OutcomeSuccess, "fenced: "+v.Why)
	return nil, nil
}

// evacuateStep submits a fenced evacuation of the host (its own task, so
// that a guest that cannot move now does not fail the fence; the leader's
// sweep tries again).
func (c *Controller) evacuateStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	_, h, act, err := c.acting(ctx, sc)
	if err != nil || !act {
		return nil, err
	}
	guests, err := store.GuestsOnHost(ctx, c.cfg.Pool, h.ID)
	if err != nil {
		return nil, err
	}
	out := Evacuation{Guests: len(guests)}
	if len(guests) == 0 {
		out.Note = "no guest on the host"
		c.m.fences.WithLabelValues("fenced").Inc()
		return out, nil
	}
	id, err := c.submitEvacuation(ctx, h)
	if errors.Is(err, rackcloud.ErrConflict) {
		out.Note = "an evacuation of the host is at work already"
		c.m.fences.WithLabelValues("fenced").Inc()
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	out.TaskID = id
	c.m.fences.WithLabelValues("fenced").Inc()
	return out, nil
}

// submitEvacuation submits host.evacuate (fenced) for h, audited as the
// controller.
func (c *Controller) submitEvacuation(ctx context.Context, h rackcloud.Host) (string, error) {
	target := "host/" + h.ID + "/evacuate"
	var info *tasks.Info
	err := store.InTx(ctx, c.cfg.Pool, func(tx pgx.Tx) error {
		var err error
		info, err = c.engine.Submit(ctx, tx, tasks.Submission{Kind: rackcloud.KindHostEvacuate, Target: target,
			Params: rackcloud.HostEvacuateParams{HostID: h.ID, Fenced: true}})
		if err != nil {
			return err
		}
		return store.SetTaskOwner(ctx, tx, info.ID, "", Actor)
	})
	if err != nil {
		return "", err
	}
	c.audit(ctx, "evacuateHost", target, store.OutcomeSuccess, "fenced evacuation, task "+info.ID)
	return info.ID, nil
}
