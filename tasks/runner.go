package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
)

// errLeaseLost is returned by a fenced write that matched no row.
var errLeaseLost = fmt.Errorf("%w: write fenced off", ErrLeaseLost)

// runner drives one claimed task through the state machine while this
// worker holds its lease.
type runner struct {
	e       *Engine
	k       *registered
	row     *taskRow
	token   int64
	prog    progress
	outputs map[string]json.RawMessage
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelCauseFunc

	// the last step run: its output and start, for the record
	lastOut   json.RawMessage
	lastStart time.Time

	// claimedAt is when the claim returned; snoozed is how long the
	// current step had been snoozing then (by the database's clock).
	claimedAt time.Time
	snoozed   time.Duration

	mu         sync.Mutex
	stepCancel context.CancelCauseFunc
	stepPhase  Phase
	beatAt     time.Time
	cancelSeen bool
	lost       bool
	done       bool
}

func (e *Engine) newRunner(ctx context.Context, k *registered, row *taskRow, snoozed time.Duration) *runner {
	rctx, cancel := context.WithCancelCause(ctx)
	r := &runner{
		e:       e,
		k:       k,
		row:     row,
		token:   deref(row.LeaseToken),
		prog:    row.progress(),
		outputs: map[string]json.RawMessage{},
		log:     e.log.With("task", row.ID, "kind", row.Kind),
		ctx:     rctx,
		cancel:  cancel,
		beatAt:  time.Now(),

		claimedAt: time.Now(),
		snoozed:   snoozed,
	}
	e.runMu.Lock()
	e.running[r.token] = r
	e.runMu.Unlock()
	return r
}

func (r *runner) beat(at time.Time) {
	r.mu.Lock()
	if at.After(r.beatAt) {
		r.beatAt = at
	}
	r.mu.Unlock()
}

func (r *runner) lastBeat() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.beatAt
}

// loseLease interrupts the task: another worker may hold it now.
func (r *runner) loseLease() {
	r.mu.Lock()
	if r.done || r.lost {
		r.mu.Unlock()
		return
	}
	r.lost = true
	r.mu.Unlock()
	r.e.m.leasesLost.Inc()
	r.log.Warn("task lease lost; abandoning it")
	r.cancel(ErrLeaseLost)
}

func (r *runner) isLost() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lost
}

// interrupt ends the running step with cause.
func (r *runner) interrupt(cause error) { r.cancel(cause) }

// observeCancel notes a cancel request and stops a forward step.
func (r *runner) observeCancel() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cancelSeen = true
	if r.stepCancel != nil && r.stepPhase == PhaseRun {
		r.stepCancel(ErrCanceled)
	}
}

func (r *runner) canceled() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cancelSeen
}

// writeCtx outlives an interrupted step: the write that records how it
// ended must still happen.
func (r *runner) writeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.ctx), r.e.cfg.LeaseTTL)
}

func (r *runner) run() {
	defer func() {
		r.mu.Lock()
		r.done = true
		r.mu.Unlock()
		r.cancel(nil)
	}()
	sh := r.k.shape
	if r.prog.Phase == PhaseUndo || r.prog.Step > 0 {
		if err := r.loadOutputs(); err != nil {
			r.log.Warn("load step outputs; leaving the task to be retried", "err", err)
			return
		}
	}
	pl := decide(r.prog, sh, input{kind: inClaimed, waited: r.waited()}, r.e.backoff)
	for {
		if pl.cancelChildren {
			wctx, cancel := r.writeCtx()
			_, err := r.e.cancelTree(wctx, r.row.ID, false)
			cancel()
			if err != nil {
				r.log.Warn("cancel children; leaving the task to be retried", "err", err)
				return
			}
		}
		waiting := false
		if pl.write {
			var err error
			if waiting, err = r.apply(pl); err != nil {
				if errors.Is(err, ErrLeaseLost) {
					r.loseLease()
				} else {
					r.log.Warn("record task progress; leaving the task to be retried", "err", err)
				}
				return
			}
		}
		r.prog = pl.next
		r.observe(pl)
		switch pl.do {
		case actStop:
			return
		case actParkOrGo:
			if waiting {
				return
			}
			pl = decide(r.prog, sh, input{kind: inUnparked}, r.e.backoff)
		case actCheckChildren:
			msg, err := r.checkChildren()
			if err != nil {
				r.log.Warn("check children; leaving the task to be retried", "err", err)
				return
			}
			pl = decide(r.prog, sh, input{kind: inChildren, err: msg}, r.e.backoff)
		case actRun:
			if r.prog.Phase == PhaseRun && r.canceled() {
				// Canceled before this attempt started.
				r.prog.Cancel = true
				pl = decide(r.prog, sh, input{kind: inClaimed, waited: r.waited()}, r.e.backoff)
				continue
			}
			in, ok := r.runStep()
			if !ok {
				return
			}
			if r.canceled() {
				r.prog.Cancel = true
			}
			pl = decide(r.prog, sh, in, r.e.backoff)
		}
	}
}

// waited is how long the current step has been snoozing, 0 when it is not.
func (r *runner) waited() time.Duration {
	if !r.prog.Snoozing {
		return 0
	}
	return r.snoozed + time.Since(r.claimedAt)
}

func (r *runner) loadOutputs() error {
	ctx, cancel := r.writeCtx()
	defer cancel()
	rows, err := r.e.pool.Query(ctx, sqlOutputs, r.row.ID)
	if err != nil {
		return err
	}
	for rows.Next() {
		var name string
		var out json.RawMessage
		if err := rows.Scan(&name, &out); err != nil {
			rows.Close()
			return err
		}
		r.outputs[name] = out
	}
	return rows.Err()
}

// runStep runs the current step (or compensation) once. ok is false when
// the task left this worker (lease lost, engine stopping).
func (r *runner) runStep() (in input, ok bool) {
	idx, phase := r.prog.Step, r.prog.Phase
	st := r.k.Steps[idx]
	fn := st.Run
	if phase == PhaseUndo {
		fn = st.Undo
	}
	sctx, cancel := context.WithCancelCause(r.ctx)
	defer cancel(nil)
	r.mu.Lock()
	r.stepCancel, r.stepPhase = cancel, phase
	if r.cancelSeen && phase == PhaseRun {
		cancel(ErrCanceled)
	}
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.stepCancel = nil
		r.mu.Unlock()
	}()
	sc := &StepContext{
		TaskID:    r.row.ID,
		Kind:      r.row.Kind,
		Target:    deref(r.row.Target),
		Step:      st.Name,
		StepIndex: idx,
		Phase:     phase,
		Attempt:   r.prog.Attempt,
		Worker:    r.e.cfg.ID,
		Logger:    r.log.With("step", st.Name, "phase", phase, "attempt", r.prog.Attempt),
		run:       r,
		params:    r.row.Params,
	}
	if r.prog.Snoozing {
		sc.waitingSince = r.row.WaitingSince
	}
	start := time.Now()
	out, err := call(sctx, fn, sc)
	var snoozed *snoozeError
	outcome := "succeeded"
	switch {
	case errors.As(err, &snoozed):
		outcome = "snoozed"
	case err != nil:
		outcome = "failed"
	}
	r.e.m.stepDuration.WithLabelValues(r.row.Kind, st.Name, string(phase), outcome).Observe(time.Since(start).Seconds())
	cause := context.Cause(sctx)
	if r.isLost() {
		return input{}, false
	}
	if sctx.Err() != nil && !errors.Is(cause, ErrCanceled) {
		// The engine is stopping: give the task back; this attempt does
		// not count.
		r.release()
		return input{}, false
	}
	r.lastStart = start
	r.lastOut = nil
	if err == nil {
		raw, merr := json.Marshal(out)
		if merr != nil {
			err = Permanent(fmt.Errorf("marshal output of step %s: %w", st.Name, merr))
		} else {
			if phase == PhaseRun {
				r.outputs[st.Name] = raw
			}
			r.lastOut = raw
			return input{kind: inStepOK, spawned: sc.found}, true
		}
	}
	canceled := errors.Is(cause, ErrCanceled) || errors.Is(err, ErrCanceled)
	if snoozed != nil && !canceled {
		sc.Logger.Debug("step snoozed", "for", snoozed.d, "waiting_for", snoozed.reason)
		return input{kind: inSnoozed, snooze: snoozed.d, reason: snoozed.reason, waited: r.waited()}, true
	}
	if !canceled {
		sc.Logger.Info("step failed", "err", err)
	}
	return input{kind: inStepErr, err: err.Error(), permanent: IsPermanent(err), canceled: canceled}, true
}

// call runs fn, turning a panic into an error.
func call(ctx context.Context, fn StepFunc, sc *StepContext) (out any, err error) {
	defer func() {
		if p := recover(); p != nil {
			sc.Logger.Error("step panicked", "panic", p, "stack", string(debug.Stack()))
			out, err = nil, fmt.Errorf("step %s panicked: %v", sc.Step, p)
		}
	}()
	return fn(ctx, sc)
}

// release gives the task back at once without using up the attempt.
func (r *runner) release() {
	n := r.prog
	n.Attempt = max(n.Attempt-1, 0)
	if _, err := r.apply(plan{next: n, write: true, release: true}); err != nil {
		r.log.Warn("release task", "err", err)
	}
}

// apply writes a plan, fenced by the lease. waiting reports a park that
// took (children still active).
func (r *runner) apply(pl plan) (waiting bool, err error) {
	n := pl.next
	sh := r.k.shape
	var await *int
	if n.AwaitStep >= 0 {
		a := n.AwaitStep
		await = &a
	}
	recPhase, recIdx, recName, recState, recAttempts, recErr := "", 0, "", "", 0, ""
	var out json.RawMessage
	started := time.Now()
	if rc := pl.record; rc != nil {
		recPhase, recIdx, recName, recState, recAttempts, recErr = string(rc.phase), rc.idx, rc.name, string(rc.outcome), rc.attempt, rc.err
		if rc.outcome == stepSucceeded {
			out = r.lastOut
		}
		if !r.lastStart.IsZero() {
			started = r.lastStart
		}
	}
	var types, states, phases, names, errs, msgs []string
	var steps, attempts []int
	for _, ev := range pl.events {
		types = append(types, ev.typ)
		states = append(states, string(ev.state))
		phases = append(phases, string(ev.phase))
		steps = append(steps, ev.step)
		names = append(names, ev.name)
		attempts = append(attempts, ev.attempt)
		errs = append(errs, ev.err)
		msgs = append(msgs, ev.msg)
	}
	last := ""
	if len(types) > 0 {
		last = types[len(types)-1]
	}
	if types == nil {
		types, states, phases, names, errs, msgs = []string{}, []string{}, []string{}, []string{}, []string{}, []string{}
		steps, attempts = []int{}, []int{}
	}
	ctx, cancel := r.writeCtx()
	defer cancel()
	var notes int64
	err = retryTransient(ctx, func() error {
		return r.e.pool.QueryRow(ctx, sqlApply,
			r.row.ID, r.token, string(n.State), string(n.Phase), n.UndoCause, n.Step, sh.name(n.Step), n.Attempt,
			n.Err, n.FailedStep, await,
			pl.park, pl.release, pl.terminal, pl.delay.Milliseconds(), r.e.cfg.LeaseTTL.Milliseconds(),
			recPhase, recIdx, recName, recState, recAttempts, out, recErr, started,
			types, states, phases, steps, names, attempts, errs, last,
			n.Snoozing, n.WaitingFor, msgs,
		).Scan(&waiting, &notes)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return false, errLeaseLost
	}
	if err != nil {
		return false, fmt.Errorf("task %s: %w", r.row.ID, err)
	}
	r.beat(started)
	return waiting, nil
}

// observe feeds a written plan to the metrics and the log.
func (r *runner) observe(pl plan) {
	if rc := pl.record; rc != nil && rc.outcome == stepRetrying {
		r.e.m.retries.WithLabelValues(r.row.Kind, rc.name).Inc()
	}
	if pl.terminal {
		r.e.m.finished.WithLabelValues(r.row.Kind, string(pl.next.State)).Inc()
		switch pl.next.State {
		case rackcloud.TaskFailed:
			r.log.Warn("task failed", "step", pl.next.FailedStep, "err", pl.next.Err)
		default:
			r.log.Debug("task ended", "state", pl.next.State)
		}
	}
}

// checkChildren returns the first failure among the children of the
// await step ("" when all succeeded).
func (r *runner) checkChildren() (string, error) {
	ctx, cancel := r.writeCtx()
	defer cancel()
	kids, err := r.e.children(ctx, r.e.pool, r.row.ID, r.k, r.prog.AwaitStep)
	if err != nil {
		return "", err
	}
	for _, c := range kids {
		if !c.State.Terminal() {
			return "", fmt.Errorf("child task %s is still %s", c.ID, c.State)
		}
	}
	for _, c := range kids {
		if c.State != rackcloud.TaskSucceeded {
			msg := fmt.Sprintf("child task %s (%s) %s", c.ID, c.Kind, c.State)
			if c.Error != "" {
				msg += ": " + c.Error
			}
			return msg, nil
		}
	}
	return "", nil
}

// spawn creates a child for sc's step (see StepContext.SpawnChild).
func (r *runner) spawn(ctx context.Context, sc *StepContext, c ChildSpec) (string, error) {
	k, raw, err := r.e.checkSubmission(c.Kind, c.Target, c.Params)
	if err != nil {
		return "", err
	}
	if len(c.Key) > 200 {
		return "", fmt.Errorf("%w: child key longer than 200 characters", rackcloud.ErrInvalid)
	}
	var target *string
	if c.Target != "" {
		target = &c.Target
	}
	var held, canceled bool
	var created, existing *string
	var writes int64
	err = retryTransient(ctx, func() error {
		var h int64
		err := r.e.pool.QueryRow(ctx, sqlSpawn, r.row.ID, r.token, sc.StepIndex, c.Key, c.Kind, target, raw, k.Steps[0].Name).
			Scan(&h, &canceled, &created, &existing, &writes)
		held = h > 0
		return err
	})
	if err != nil {
		return "", fmt.Errorf("spawn %s child %q of task %s: %w", c.Kind, c.Key, r.row.ID, mapErr(err))
	}
	switch {
	case !held:
		return "", fmt.Errorf("spawn child of task %s: %w", r.row.ID, errLeaseLost)
	case canceled:
		return "", fmt.Errorf("spawn child of task %s: %w", r.row.ID, ErrCanceled)
	case created != nil:
		r.e.m.submitted.WithLabelValues(c.Kind).Inc()
		return *created, nil
	case existing != nil:
		return *existing, nil
	}
	return "", fmt.Errorf("spawn %s child %q of task %s: no row", c.Kind, c.Key, r.row.ID)
}
