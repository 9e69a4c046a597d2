package vmctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// Step names of host.evacuate (guest.recreate reuses guest.create's).
const (
	StepEvacCheck = "check"
	StepEvacuate  = "evacuate"
	StepReport    = "report"
)

// evacuateKind empties a host: every guest on it gets its own sub-task,
// so that one guest that cannot move does not keep the others; what each
// guest gets is rackcloud.EvacuationFor's decision. From a live host the
// sub-task is guest.migrate (cold); from a fenced host it is
// guest.recreate (re-placed and made again from its image, the host not
// touched). The task reports how many guests moved, failed and were left;
// when a sub-task failed the task fails too (the host is not empty) and
// the report is the output of the evacuate step's compensation, which
// moves nothing back: the guests that moved stay moved.
func (c *Controller) evacuateKind() tasks.Kind {
	return tasks.Kind{Name: rackcloud.KindHostEvacuate, Validate: validEvacuateParams, Steps: []tasks.Step{
		{Name: StepEvacCheck, Run: c.evacCheckStep},
		{Name: StepEvacuate, Run: c.evacuateStep, Undo: c.reportStep},
		{Name: StepReport, Run: c.reportStep},
	}}
}

// recreateKind restarts a fenced host's guest on another host: the claim
// moves in one judged statement (the fenced host's share is released),
// the disk is made from the image, the guest is defined and started
// (unless it was stopped). Nothing is asked of the fenced host. A guest
// no host can take stays on the fenced host, failed, with placement's
// explanation.
func (c *Controller) recreateKind() tasks.Kind {
	return tasks.Kind{Name: rackcloud.KindGuestRecreate, Steps: []tasks.Step{
		{Name: StepPlace, Run: c.recreatePlaceStep, Undo: c.recreateFailedStep},
		{Name: StepDisk, Run: c.prepareStep},
		{Name: StepConfigure, Run: c.configureStep},
		{Name: StepStart, Run: c.recreateStartStep},
	}}
}

func validEvacuateParams(raw json.RawMessage) error {
	var p rackcloud.HostEvacuateParams
	if err := json.Unmarshal(raw, &p); err != nil || !store.ValidID(p.HostID) {
		return errors.New(`want {"host_id": <uuid>, "fenced": bool}`)
	}
	return nil
}

// Evacuee is one guest of an evacuated host, as the evacuate step
// recorded it and the report shows it.
type Evacuee struct {
	GuestID string                     `json:"guest_id"`
	Name    string                     `json:"name"`
	Action  rackcloud.EvacuationAction `json:"action"`
	Reason  string                     `json:"reason"`
	// TaskID is the guest's sub-task (none for a guest left).
	TaskID string `json:"task_id,omitempty"`
	// Outcome is moved, failed or left (in the report).
	Outcome string `json:"outcome,omitempty"`
	// Error is the failed sub-task's error.
	Error string `json:"error,omitempty"`
}

// EvacuationReport is what host.evacuate reports.
type EvacuationReport struct {
	Host   string    `json:"host"`
	Fenced bool      `json:"fenced"`
	Moved  int       `json:"moved"`
	Failed int       `json:"failed"`
	Left   int       `json:"left"`
	Guests []Evacuee `json:"guests"`
}

type evacCheck struct {
	Host   string `json:"host"`
	Fenced bool   `json:"fenced"`
}

func (c *Controller) evacParams(sc *tasks.StepContext) (rackcloud.HostEvacuateParams, error) {
	var p rackcloud.HostEvacuateParams
	return p, sc.Params(&p)
}

// evacCheckStep asks the rules again (the host may have changed since
// the request).
func (c *Controller) evacCheckStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	p, err := c.evacParams(sc)
	if err != nil {
		return nil, err
	}
	h, err := store.GetHost(ctx, c.cfg.Pool, p.HostID)
	if errors.Is(err, rackcloud.ErrNotFound) {
		return nil, tasks.Permanent(err)
	}
	if err != nil {
		return nil, err
	}
	if err := rackcloud.CanEvacuate(h, p.Fenced); err != nil {
		return nil, tasks.Permanent(err)
	}
	return evacCheck{Host: h.Name, Fenced: p.Fenced}, nil
}

// evacuateStep spawns one sub-task per guest that moves and marks the
// guests a fenced host keeps.
func (c *Controller) evacuateStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	p, err := c.evacParams(sc)
	if err != nil {
		return nil, err
	}
	var chk evacCheck
	if err := sc.Output(StepEvacCheck, &chk); err != nil {
		return nil, err
	}
	guests, err := store.GuestsOnHost(ctx, c.cfg.Pool, p.HostID)
	if err != nil {
		return nil, err
	}
	out, err := c.spawnedBefore(ctx, sc, guests)
	if err != nil {
		return nil, err
	}
	for _, g := range guests {
		action, reason := rackcloud.EvacuationFor(g, p.Fenced)
		e := Evacuee{GuestID: g.ID, Name: g.Name, Action: action, Reason: reason}
		switch action {
		case rackcloud.EvacMigrate:
			e.TaskID, err = c.spawnGuest(ctx, sc, g, rackcloud.KindGuestMigrate, rackcloud.GuestMigrateParams{GuestID: g.ID})
		case rackcloud.EvacRecreate:
			e.TaskID, err = c.spawnGuest(ctx, sc, g, rackcloud.KindGuestRecreate,
				rackcloud.GuestRecreateParams{GuestID: g.ID, FromHostID: p.HostID})
		case rackcloud.EvacLeave:
			err = c.leaveOnFenced(ctx, g, chk, reason)
		}
		if errors.Is(err, rackcloud.ErrConflict) {
			// Another task took the guest between the listing and the
			// spawn: that task decides.
			e.Action, e.Reason, err = rackcloud.EvacLeave, "another task is at work on the guest", nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// spawnedBefore returns the sub-tasks an earlier attempt of the evacuate
// step spawned for guests that are not in listed (they left the host
// since), as the plan records them: an attempt run again records the
// same plan.
func (c *Controller) spawnedBefore(ctx context.Context, sc *tasks.StepContext, listed []rackcloud.Guest) ([]Evacuee, error) {
	kids, err := sc.Children(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, g := range listed {
		seen[g.ID] = true
	}
	var out []Evacuee
	for _, k := range kids {
		if k.SpawnedBy != StepEvacuate || seen[k.Key] {
			continue
		}
		action := rackcloud.EvacMigrate
		if k.Kind == rackcloud.KindGuestRecreate {
			action = rackcloud.EvacRecreate
		}
		name := k.Key // the guest's ID (spawnGuest)
		if g, err := store.GetGuest(ctx, c.cfg.Pool, k.Key); err == nil {
			name = g.Name
		}
		out = append(out, Evacuee{GuestID: k.Key, Name: name, Action: action, Reason: "sub-task spawned by an earlier attempt", TaskID: k.ID})
	}
	return out, nil
}

func (c *Controller) spawnGuest(ctx context.Context, sc *tasks.StepContext, g rackcloud.Guest, kind string, params any) (string, error) {
	return sc.SpawnChild(ctx, tasks.ChildSpec{Key: g.ID, Kind: kind, Target: "guest/" + g.ID, Params: params})
}

// leaveOnFenced fails a running guest that stays on a fenced host, with
// the reason: it is not running any more, and nothing will restart it.
func (c *Controller) leaveOnFenced(ctx context.Context, g rackcloud.Guest, chk evacCheck, reason string) error {
	if !chk.Fenced || g.State != rackcloud.GuestRunning {
		return nil
	}
	why := fmt.Sprintf("host %s was fenced (powered off): %s", chk.Host, reason)
	if _, err := store.SetGuestState(ctx, c.cfg.Pool, g.ID, rackcloud.GuestFailed, why, nil); err != nil {
		return err
	}
	return store.AddGuestEvent(ctx, c.cfg.Pool, g.ID, "not_evacuated", why)
}

// reportStep counts what the guests' sub-tasks did: the last step of an
// evacuation, and the evacuate step's compensation when one failed.
func (c *Controller) reportStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	var chk evacCheck
	var plan []Evacuee
	if err := sc.Output(StepEvacCheck, &chk); err != nil {
		return nil, nil // failed before anything was done
	}
	if err := sc.Output(StepEvacuate, &plan); err != nil && !errors.Is(err, rackcloud.ErrNotFound) {
		return nil, err
	}
	kids, err := sc.Children(ctx)
	if err != nil {
		return nil, err
	}
	byID := map[string]tasks.Child{}
	for _, k := range kids {
		byID[k.ID] = k
	}
	return Report(chk.Host, chk.Fenced, plan, byID), nil
}

// Report counts an evacuation's outcome from its plan and its sub-tasks
// (by ID): a guest whose sub-task succeeded moved, one whose sub-task
// failed or was canceled failed, one without a sub-task was left.
func Report(host string, fenced bool, plan []Evacuee, kids map[string]tasks.Child) EvacuationReport {
	r := EvacuationReport{Host: host, Fenced: fenced, Guests: []Evacuee{}}
	for _, e := range plan {
		k, ok := kids[e.TaskID]
		switch {
		case e.TaskID == "":
			e.Outcome = "left"
			r.Left++
		case ok && k.State == rackcloud.TaskSucceeded:
			e.Outcome = "moved"
			r.Moved++
		default:
			e.Outcome = "failed"
			if ok {
				e.Error = k.Error
			}
			r.Failed++
		}
		r.Guests = append(r.Guests, e)
	}
	return r
}

// recreatePlaced is what guest.recreate's place step records.
type recreatePlaced struct {
	PlaceOutput
	// WasRunning: the guest is started on its new host unless it was
	// stopped.
	WasRunning bool `json:"was_running"`
}

func (c *Controller) recreatePlaceStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	var p rackcloud.GuestRecreateParams
	if err := sc.Params(&p); err != nil {
		return nil, err
	}
	g, err := c.guestOf(ctx, sc)
	if err != nil {
		return nil, err
	}
	run := g.State != rackcloud.GuestStopped
	if g.HostID != p.FromHostID { // moved by an earlier attempt
		return recreatePlaced{PlaceOutput: PlaceOutput{HostID: g.HostID, HostName: c.HostName(g.HostID), Explanation: g.Placement},
			WasRunning: run}, nil
	}
	out, err := c.moveClaim(ctx, g, p.FromHostID, "", "evacuated")
	var nf *NoFitError
	if errors.As(err, &nf) {
		why := "its host was fenced and placement found no other host: " + nf.Explanation.Summary
		// The guest keeps its row and its claim on the fenced host: the
		// refusal is explained where its owner looks.
		_ = store.SetGuestPlacement(ctx, c.cfg.Pool, g.ID, why)
		_ = store.AddGuestEvent(ctx, c.cfg.Pool, g.ID, "not_evacuated", why)
		if _, err := store.SetGuestState(ctx, c.cfg.Pool, g.ID, rackcloud.GuestFailed, why, nil); err != nil {
			return nil, err
		}
		return nil, tasks.Permanent(fmt.Errorf("%w: no host to restart %s on: %s", rackcloud.ErrConflict, g.Name, nf.Explanation.Summary))
	}
	if err != nil {
		return nil, err
	}
	if run {
		// Until its start step, the guest is being made again on its new
		// host, not running there (a re-run of this step reads creating
		// as running before, stopped as stopped).
		if _, err := store.SetGuestState(ctx, c.cfg.Pool, g.ID, rackcloud.GuestCreating, "", nil); err != nil {
			return nil, err
		}
	}
	return recreatePlaced{PlaceOutput: out, WasRunning: run}, nil
}

// recreateFailedStep compensates a recreate that failed after its claim
// moved: the guest is failed where the claim now is, with the reason, so
// that it does not read creating for ever (start it again, or delete it).
func (c *Controller) recreateFailedStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	var pl recreatePlaced
	if err := sc.Output(StepPlace, &pl); err != nil {
		return nil, nil // the claim did not move: the guest is as it was
	}
	g, err := c.guestOf(ctx, sc)
	if err != nil {
		return nil, err
	}
	if g.State != rackcloud.GuestCreating {
		return nil, nil
	}
	why := fmt.Sprintf("its host was fenced and recreating it on %s failed", pl.HostName)
	_, err = store.SetGuestState(ctx, c.cfg.Pool, g.ID, rackcloud.GuestFailed, why, nil)
	return nil, err
}

func (c *Controller) recreateStartStep(ctx context.Context, sc *tasks.StepContext) (any, error) {
	var pl recreatePlaced
	if err := sc.Output(StepPlace, &pl); err != nil {
		return nil, err
	}
	if !pl.WasRunning {
		g, err := c.guestOf(ctx, sc)
		if err != nil {
			return nil, err
		}
		_, err = store.SetGuestState(ctx, c.cfg.Pool, g.ID, rackcloud.GuestStopped, "", nil)
		return map[string]string{"start": "skipped: the guest was stopped when its host was fenced"}, err
	}
	return c.startStep(ctx, sc)
}
