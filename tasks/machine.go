package tasks

import (
	"fmt"
	"time"

	"github.com/rackcloud/rackcloud"
)

// This file is the pure state machine of a task: it takes the durable
// progress of a task, the shape of its kind and what just happened, and
// returns the new progress, the writes that record it and what the worker
// does next. It does no I/O; engine.go applies its plans.

// Phase says whether a task runs its steps forward or compensates.
type Phase string

// Phases.
const (
	// PhaseRun runs the kind's steps in order.
	PhaseRun Phase = "run"
	// PhaseUndo runs the declared compensations of the steps that started,
	// last first, after a failure or a cancel.
	PhaseUndo Phase = "undo"
)

// Why a task compensates.
const (
	causeFailed   = "failed"
	causeCanceled = "canceled"
)

// progress is the part of a task's row the machine reads and writes.
type progress struct {
	State rackcloud.TaskState
	Phase Phase
	// Step is the index of the current step in Phase.
	Step int
	// Attempt counts the attempts started of Step, including the one in
	// progress; 0 means the step has not started.
	Attempt int
	// Cancel is true once a cancel was requested.
	Cancel bool
	// AwaitStep is the run step whose children must all have succeeded
	// before the task goes on; -1 when there is none.
	AwaitStep int
	// UndoCause is causeFailed or causeCanceled in PhaseUndo.
	UndoCause string
	// Err is the error that failed the task, kept through the undo phase;
	// FailedStep names the step it came from.
	Err        string
	FailedStep string
	// Snoozing is true while the current step waits for the machine: it
	// snoozed and has not ended an attempt since (waiting_since is set).
	// A snooze gives its attempt back, so the step started even when
	// Attempt is 0.
	Snoozing bool
	// WaitingFor is what the snoozing step said it waits for.
	WaitingFor string
}

// shape is what the machine needs to know of a kind.
type shape struct {
	names       []string
	maxAttempts []int
	hasUndo     []bool
	// waitTimeout bounds how long each step may snooze; 0 for no bound.
	waitTimeout []time.Duration
}

func (s shape) name(i int) string {
	if i >= 0 && i < len(s.names) {
		return s.names[i]
	}
	return ""
}

// inputKind is what just happened to a task.
type inputKind int

const (
	// inClaimed: a worker claimed the task; the claim already counted an
	// attempt of the current step.
	inClaimed inputKind = iota
	// inStepOK: the current step (or compensation) returned an output.
	inStepOK
	// inStepErr: the current step returned an error.
	inStepErr
	// inChildren: the children of AwaitStep were checked.
	inChildren
	// inUnparked: a park found no active children; go on.
	inUnparked
	// inSnoozed: the current step returned Snooze: what it waits for has
	// not happened yet.
	inSnoozed
)

type input struct {
	kind inputKind
	// err is the step's error (inStepErr) or the first failed child
	// (inChildren; empty when all succeeded).
	err string
	// permanent errors are not retried.
	permanent bool
	// canceled: the step stopped because a cancel was requested.
	canceled bool
	// spawned: the step spawned (or found already spawned) children.
	spawned bool
	// waited is how long the current step has been snoozing, when
	// progress.Snoozing (inClaimed, inSnoozed).
	waited time.Duration
	// snooze and reason are the Snooze of inSnoozed.
	snooze time.Duration
	reason string
}

// action is what the worker does after applying a plan.
type action int

const (
	// actRun runs step Step of Phase (attempt Attempt).
	actRun action = iota
	// actCheckChildren reads the children of AwaitStep and feeds
	// inChildren back.
	actCheckChildren
	// actStop: the task left this worker (terminal, retry later, parked).
	actStop
	// actParkOrGo: the write parks the task if it still has active
	// children; when it did not, feed inUnparked back.
	actParkOrGo
)

// stepOutcome is a step row's state in task_steps.
type stepOutcome string

const (
	stepSucceeded stepOutcome = "succeeded"
	stepRetrying  stepOutcome = "retrying"
	stepFailed    stepOutcome = "failed"
)

// record asks to write the end of an attempt of one step.
type record struct {
	phase   Phase
	idx     int
	name    string
	outcome stepOutcome
	attempt int
	err     string
}

// event is one event to append to the task's log.
type event struct {
	typ     string
	state   rackcloud.TaskState
	phase   Phase
	step    int
	name    string
	attempt int
	err     string
	msg     string
}

// Event types.
const (
	EventCreated         = "created"
	EventStarted         = "started"
	EventStepSucceeded   = "step_succeeded"
	EventStepFailed      = "step_failed"
	EventStepRetrying    = "step_retrying"
	EventUndoStarted     = "undo_started"
	EventCancelRequested = "cancel_requested"
	EventSucceeded       = "succeeded"
	EventFailed          = "failed"
	EventCanceled        = "canceled"
	// EventStepWaiting: the step snoozed, waiting for what Event.Message
	// says. Only the first snooze of a step, and a snooze whose reason
	// differs from the last one, append it: a long wait does not flood the
	// log.
	EventStepWaiting = "step_waiting"
)

// plan is the machine's answer: the new progress, how to record it and what
// to do next. Every plan is written in one statement fenced by the lease.
type plan struct {
	next progress
	do   action
	// write is false when nothing needs recording (actCheckChildren).
	write    bool
	record   *record
	events   []event
	release  bool          // give the lease back
	delay    time.Duration // with release: not before now+delay
	park     bool          // park while children are active
	terminal bool
	// cancelChildren asks to cancel the task's active descendants before
	// the write (entering the undo phase).
	cancelChildren bool
}

// backoffFunc returns the delay before attempt+1 after attempt failed.
type backoffFunc func(attempt int) time.Duration

// decide is the state machine. p is the task's progress as recorded (after
// a claim, with the claim's attempt counted); s the kind's shape.
func decide(p progress, s shape, in input, backoff backoffFunc) plan {
	if p.State.Terminal() {
		return plan{next: p, do: actStop}
	}
	pl := transition(p, s, in, backoff)
	// A wait belongs to one step: it ends when the step ends an attempt
	// (a record) or the task moves to another step or phase.
	if n := &pl.next; n.Snoozing && (pl.record != nil || n.Phase != p.Phase || n.Step != p.Step || n.State.Terminal()) {
		n.Snoozing, n.WaitingFor = false, ""
		pl.write = true
	}
	return pl
}

func transition(p progress, s shape, in input, backoff backoffFunc) plan {
	switch in.kind {
	case inClaimed:
		if pl, ok := waitTimedOut(p, s, p.Snoozing, p.WaitingFor, in.waited, backoff); ok {
			return pl
		}
		// The claimed attempt has not started: compensation starts from the
		// last step an earlier attempt started, or the one that snoozed.
		return advance(plan{}, p, s, p.Attempt-1 > 0 || p.Snoozing)
	case inUnparked:
		return advance(plan{}, p, s, false)
	case inChildren:
		if p.Phase != PhaseRun || p.AwaitStep < 0 {
			return advance(plan{}, p, s, false)
		}
		n := p
		n.AwaitStep = -1
		if in.err != "" && !p.Cancel {
			// A failed child fails the step that spawned it, without retry.
			failed := p.AwaitStep
			return beginUndo(plan{write: true}, n, s, causeFailed,
				fmt.Sprintf("step %s: %s", s.name(failed), in.err), s.name(failed), failed)
		}
		return advance(plan{write: true}, n, s, false)
	case inStepOK:
		pl := plan{write: true}
		pl.record = &record{phase: p.Phase, idx: p.Step, name: s.name(p.Step), outcome: stepSucceeded, attempt: p.Attempt}
		pl.events = append(pl.events, event{typ: EventStepSucceeded, state: runningState(p), phase: p.Phase, step: p.Step, name: s.name(p.Step), attempt: p.Attempt})
		n := p
		n.Attempt = 0
		if p.Phase == PhaseUndo {
			n.Step--
			return advance(pl, n, s, false)
		}
		n.Step++
		if in.spawned {
			n.AwaitStep = p.Step
			n.State = runningState(n)
			pl.next = n
			pl.park = true
			pl.do = actParkOrGo
			fillEventStates(&pl)
			return pl
		}
		return advance(pl, n, s, false)
	case inStepErr:
		pl := plan{write: true}
		if in.canceled && p.Phase == PhaseRun {
			// The step stopped for a cancel: compensate from this step.
			n := p
			n.Cancel = true
			pl.record = &record{phase: p.Phase, idx: p.Step, name: s.name(p.Step), outcome: stepFailed, attempt: p.Attempt, err: in.err}
			return beginUndo(pl, n, s, causeCanceled, "", "", p.Step)
		}
		maxA := s.maxAttempts[p.Step]
		if !in.permanent && p.Attempt < maxA {
			pl.record = &record{phase: p.Phase, idx: p.Step, name: s.name(p.Step), outcome: stepRetrying, attempt: p.Attempt, err: in.err}
			pl.events = append(pl.events, event{typ: EventStepRetrying, phase: p.Phase, step: p.Step, name: s.name(p.Step), attempt: p.Attempt, err: in.err})
			pl.next = p
			pl.next.State = runningState(p)
			pl.release = true
			pl.delay = backoff(p.Attempt)
			pl.do = actStop
			fillEventStates(&pl)
			return pl
		}
		pl.record = &record{phase: p.Phase, idx: p.Step, name: s.name(p.Step), outcome: stepFailed, attempt: p.Attempt, err: in.err}
		pl.events = append(pl.events, event{typ: EventStepFailed, state: runningState(p), phase: p.Phase, step: p.Step, name: s.name(p.Step), attempt: p.Attempt, err: in.err})
		msg := fmt.Sprintf("step %s failed after %d attempt(s): %s", s.name(p.Step), p.Attempt, in.err)
		if in.permanent {
			msg = fmt.Sprintf("step %s failed (permanent): %s", s.name(p.Step), in.err)
		}
		if p.Phase == PhaseUndo {
			n := p
			n.Err = joinErr(n.Err, "compensation "+msg)
			n.Step--
			n.Attempt = 0
			return advance(pl, n, s, false)
		}
		return beginUndo(pl, p, s, causeFailed, msg, s.name(p.Step), p.Step)
	case inSnoozed:
		if p.Cancel && p.Phase == PhaseRun {
			// Canceled while it waited: compensate from this step now
			// rather than after the snooze.
			return beginUndo(plan{write: true}, p, s, causeCanceled, "", "", p.Step)
		}
		if pl, ok := waitTimedOut(p, s, true, in.reason, in.waited, backoff); ok {
			return pl
		}
		return snooze(p, s, in)
	}
	panic(fmt.Sprintf("tasks: unknown input %d", in.kind))
}

// snooze releases the task until the snooze is over (or the step's wait
// timeout, if sooner), giving the claim's attempt back: waiting is not
// failing.
func snooze(p progress, s shape, in input) plan {
	n := p
	n.Attempt = max(p.Attempt-1, 0)
	n.Snoozing, n.WaitingFor = true, in.reason
	n.State = runningState(p)
	pl := plan{next: n, write: true, release: true, do: actStop, delay: max(in.snooze, 0)}
	if t := s.waitTimeout[p.Step]; t > 0 {
		pl.delay = min(pl.delay, t-in.waited)
	}
	if !p.Snoozing || p.WaitingFor != in.reason {
		pl.events = append(pl.events, event{typ: EventStepWaiting, phase: p.Phase, step: p.Step, name: s.name(p.Step), attempt: p.Attempt, msg: in.reason})
	}
	fillEventStates(&pl)
	return pl
}

// waitTimedOut fails the current step for good when it has been snoozing
// (for reason) for its wait timeout or longer. An attempt past the last
// one is left to advance, which fails it as lost.
func waitTimedOut(p progress, s shape, snoozing bool, reason string, waited time.Duration, backoff backoffFunc) (plan, bool) {
	if !snoozing || p.Step < 0 || p.Step >= len(s.waitTimeout) || p.Attempt > s.maxAttempts[p.Step] {
		return plan{}, false
	}
	t := s.waitTimeout[p.Step]
	if t <= 0 || waited < t {
		return plan{}, false
	}
	err := waitTimeoutError(t, reason)
	return transition(p, s, input{kind: inStepErr, err: err.Error(), permanent: true}, backoff), true
}

// waitTimeoutError is the error of a step whose wait for reason timed out
// after timeout.
func waitTimeoutError(timeout time.Duration, reason string) error {
	return fmt.Errorf("%w: waited %s for %s", ErrWaitTimeout, timeout, reason)
}

// advance decides what to do with progress n: run the current step,
// check children, compensate, or end. started says whether the current
// attempt already started (for where compensation begins).
func advance(pl plan, n progress, s shape, started bool) plan {
	if n.Phase == PhaseRun {
		if n.Cancel {
			last := n.Step - 1
			if started {
				last = n.Step
			}
			return beginUndo(pl, n, s, causeCanceled, "", "", last)
		}
		if n.AwaitStep >= 0 {
			pl.next = n
			pl.next.State = runningState(n)
			pl.do = actCheckChildren
			fillEventStates(&pl)
			return pl
		}
		if n.Step >= len(s.names) {
			n.State = rackcloud.TaskSucceeded
			n.Attempt = 0
			pl.write = true
			pl.terminal = true
			pl.events = append(pl.events, event{typ: EventSucceeded, phase: n.Phase, step: n.Step})
			pl.next = n
			pl.do = actStop
			fillEventStates(&pl)
			return pl
		}
		if n.Attempt == 0 {
			n.Attempt = 1
			pl.write = true
		}
		if n.Attempt > s.maxAttempts[n.Step] {
			// Earlier attempts never ended: their workers died.
			msg := fmt.Sprintf("step %s failed after %d attempt(s): attempt %d did not finish (worker lost)",
				s.name(n.Step), n.Attempt-1, n.Attempt-1)
			pl.write = true
			pl.events = append(pl.events, event{typ: EventStepFailed, state: runningState(n), phase: n.Phase, step: n.Step, name: s.name(n.Step), attempt: n.Attempt - 1, err: "worker lost"})
			n.Attempt--
			pl.record = &record{phase: n.Phase, idx: n.Step, name: s.name(n.Step), outcome: stepFailed, attempt: n.Attempt, err: "worker lost"}
			return beginUndo(pl, n, s, causeFailed, msg, s.name(n.Step), n.Step)
		}
		n.State = runningState(n)
		pl.next = n
		pl.do = actRun
		fillEventStates(&pl)
		return pl
	}
	// PhaseUndo: steps without a compensation are skipped.
	for {
		for n.Step >= 0 && !s.hasUndo[n.Step] {
			n.Step--
			n.Attempt = 0
		}
		if n.Step < 0 {
			n.Step = 0
			n.Attempt = 0
			pl.write = true
			pl.terminal = true
			pl.do = actStop
			if n.UndoCause == causeCanceled && n.Err == "" {
				n.State = rackcloud.TaskCanceled
				pl.events = append(pl.events, event{typ: EventCanceled, phase: n.Phase})
			} else {
				n.State = rackcloud.TaskFailed
				if n.UndoCause == causeCanceled {
					n.Err = joinErr("canceled", n.Err)
				}
				pl.events = append(pl.events, event{typ: EventFailed, phase: n.Phase, err: n.Err})
			}
			pl.next = n
			fillEventStates(&pl)
			return pl
		}
		if n.Attempt == 0 {
			n.Attempt = 1
			pl.write = true
		}
		if n.Attempt > s.maxAttempts[n.Step] {
			n.Err = joinErr(n.Err, fmt.Sprintf("compensation step %s failed after %d attempt(s): attempt %d did not finish (worker lost)",
				s.name(n.Step), n.Attempt-1, n.Attempt-1))
			pl.write = true
			n.Step--
			n.Attempt = 0
			continue
		}
		n.State = runningState(n)
		pl.next = n
		pl.do = actRun
		fillEventStates(&pl)
		return pl
	}
}

// beginUndo switches n to the undo phase from step last (the last step that
// started). It parks first: active children are canceled and awaited
// before any compensation runs.
func beginUndo(pl plan, n progress, s shape, cause, err, failedStep string, last int) plan {
	n.Phase = PhaseUndo
	n.UndoCause = cause
	n.AwaitStep = -1
	if cause == causeFailed {
		n.Err = err
		n.FailedStep = failedStep
	}
	// Step -1: nothing started, nothing to undo; the undo loop ends at once.
	n.Step = max(last, -1)
	n.Attempt = 0
	pl.write = true
	pl.events = append(pl.events, event{typ: EventUndoStarted, phase: PhaseUndo, step: max(n.Step, 0), name: s.name(n.Step), err: err})
	pl.cancelChildren = true
	pl.park = true
	pl.do = actParkOrGo
	n.State = runningState(n)
	pl.next = n
	fillEventStates(&pl)
	return pl
}

// runningState is the non-terminal state a task shows.
func runningState(n progress) rackcloud.TaskState {
	if n.Cancel || n.UndoCause == causeCanceled {
		return rackcloud.TaskCanceling
	}
	return rackcloud.TaskRunning
}

// fillEventStates stamps the events that did not say otherwise with the
// state the plan leads to.
func fillEventStates(pl *plan) {
	for i := range pl.events {
		if pl.events[i].state == "" {
			pl.events[i].state = pl.next.State
		}
	}
}

func joinErr(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

// defaultBackoff returns exponential backoff: base, 2*base, 4*base... capped
// at maxDelay.
func exponentialBackoff(base, maxDelay time.Duration) backoffFunc {
	return func(attempt int) time.Duration {
		d := base
		for i := 1; i < attempt && d < maxDelay; i++ {
			d *= 2
		}
		return min(d, maxDelay)
	}
}
