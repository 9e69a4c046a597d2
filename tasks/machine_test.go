package tasks

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
)

var testBackoff = exponentialBackoff(time.Second, 10*time.Second)

func threeSteps() shape {
	return shape{
		names:       []string{"a", "b", "c"},
		maxAttempts: []int{3, 3, 3},
		hasUndo:     []bool{true, false, true},
		waitTimeout: []time.Duration{0, time.Minute, 0},
	}
}

// snoozing is progress p whose step has been snoozing for reason.
func snoozing(p progress, reason string) progress {
	p.Snoozing, p.WaitingFor = true, reason
	return p
}

func running(step, attempt int) progress {
	return progress{State: rackcloud.TaskRunning, Phase: PhaseRun, Step: step, Attempt: attempt, AwaitStep: -1}
}

func TestDecideTable(t *testing.T) {
	s := threeSteps()
	undoing := func(step, attempt int, cause, err string) progress {
		p := running(step, attempt)
		p.Phase, p.UndoCause, p.Err = PhaseUndo, cause, err
		if cause == causeCanceled {
			p.Cancel = true
			p.State = rackcloud.TaskCanceling
		}
		return p
	}
	// timedOut is the plan of step b failing after its wait timeout in
	// attempt a.
	timedOut := func(a int) plan {
		const err = "wait timed out: waited 1m0s for agent report"
		const msg = "step b failed (permanent): " + err
		next := undoing(1, 0, causeFailed, msg)
		next.FailedStep = "b"
		return plan{next: next, do: actParkOrGo, write: true, park: true, cancelChildren: true,
			record: &record{phase: PhaseRun, idx: 1, name: "b", outcome: stepFailed, attempt: a, err: err},
			events: []event{
				{typ: EventStepFailed, state: rackcloud.TaskRunning, phase: PhaseRun, step: 1, name: "b", attempt: a, err: err},
				{typ: EventUndoStarted, state: rackcloud.TaskRunning, phase: PhaseUndo, step: 1, name: "b", err: msg},
			}}
	}
	tests := map[string]struct {
		p    progress
		in   input
		want plan
	}{
		"claimed: run the current step": {
			p: running(1, 1), in: input{kind: inClaimed},
			want: plan{next: running(1, 1), do: actRun},
		},
		"step ok: next step, attempt 1, in one write": {
			p: running(0, 2), in: input{kind: inStepOK},
			want: plan{next: running(1, 1), do: actRun, write: true,
				record: &record{phase: PhaseRun, idx: 0, name: "a", outcome: stepSucceeded, attempt: 2},
				events: []event{{typ: EventStepSucceeded, state: rackcloud.TaskRunning, phase: PhaseRun, step: 0, name: "a", attempt: 2}}},
		},
		"last step ok: succeeded": {
			p: running(2, 1), in: input{kind: inStepOK},
			want: plan{next: progress{State: rackcloud.TaskSucceeded, Phase: PhaseRun, Step: 3, AwaitStep: -1}, do: actStop, write: true, terminal: true,
				record: &record{phase: PhaseRun, idx: 2, name: "c", outcome: stepSucceeded, attempt: 1},
				events: []event{
					{typ: EventStepSucceeded, state: rackcloud.TaskRunning, phase: PhaseRun, step: 2, name: "c", attempt: 1},
					{typ: EventSucceeded, state: rackcloud.TaskSucceeded, phase: PhaseRun, step: 3},
				}},
		},
		"step ok with children: park": {
			p: running(0, 1), in: input{kind: inStepOK, spawned: true},
			want: plan{next: progress{State: rackcloud.TaskRunning, Phase: PhaseRun, Step: 1, AwaitStep: 0}, do: actParkOrGo, write: true, park: true,
				record: &record{phase: PhaseRun, idx: 0, name: "a", outcome: stepSucceeded, attempt: 1},
				events: []event{{typ: EventStepSucceeded, state: rackcloud.TaskRunning, phase: PhaseRun, step: 0, name: "a", attempt: 1}}},
		},
		"step error with attempts left: retry later": {
			p: running(1, 2), in: input{kind: inStepErr, err: "boom"},
			want: plan{next: running(1, 2), do: actStop, write: true, release: true, delay: 2 * time.Second,
				record: &record{phase: PhaseRun, idx: 1, name: "b", outcome: stepRetrying, attempt: 2, err: "boom"},
				events: []event{{typ: EventStepRetrying, state: rackcloud.TaskRunning, phase: PhaseRun, step: 1, name: "b", attempt: 2, err: "boom"}}},
		},
		"last attempt fails: compensate from this step": {
			p: running(2, 3), in: input{kind: inStepErr, err: "boom"},
			want: plan{next: func() progress {
				p := undoing(2, 0, causeFailed, "step c failed after 3 attempt(s): boom")
				p.FailedStep = "c"
				return p
			}(), do: actParkOrGo, write: true, park: true, cancelChildren: true,
				record: &record{phase: PhaseRun, idx: 2, name: "c", outcome: stepFailed, attempt: 3, err: "boom"},
				events: []event{
					{typ: EventStepFailed, state: rackcloud.TaskRunning, phase: PhaseRun, step: 2, name: "c", attempt: 3, err: "boom"},
					{typ: EventUndoStarted, state: rackcloud.TaskRunning, phase: PhaseUndo, step: 2, name: "c", err: "step c failed after 3 attempt(s): boom"},
				}},
		},
		"claimed past the last attempt: worker lost": {
			p: running(1, 4), in: input{kind: inClaimed},
			want: plan{next: func() progress {
				p := undoing(1, 0, causeFailed, "step b failed after 3 attempt(s): attempt 3 did not finish (worker lost)")
				p.FailedStep = "b"
				return p
			}(), do: actParkOrGo, write: true, park: true, cancelChildren: true,
				record: &record{phase: PhaseRun, idx: 1, name: "b", outcome: stepFailed, attempt: 3, err: "worker lost"},
				events: []event{
					{typ: EventStepFailed, state: rackcloud.TaskRunning, phase: PhaseRun, step: 1, name: "b", attempt: 3, err: "worker lost"},
					{typ: EventUndoStarted, state: rackcloud.TaskRunning, phase: PhaseUndo, step: 1, name: "b", err: "step b failed after 3 attempt(s): attempt 3 did not finish (worker lost)"},
				}},
		},
		"canceled before anything started: nothing to undo": {
			p: func() progress { p := running(0, 1); p.Cancel = true; return p }(), in: input{kind: inClaimed},
			want: plan{next: undoing(-1, 0, causeCanceled, ""), do: actParkOrGo, write: true, park: true, cancelChildren: true,
				events: []event{{typ: EventUndoStarted, state: rackcloud.TaskCanceling, phase: PhaseUndo, step: 0}}},
		},
		"nothing to undo: canceled": {
			p: undoing(-1, 0, causeCanceled, ""), in: input{kind: inUnparked},
			want: plan{next: progress{State: rackcloud.TaskCanceled, Phase: PhaseUndo, Cancel: true, UndoCause: causeCanceled, AwaitStep: -1},
				do: actStop, write: true, terminal: true,
				events: []event{{typ: EventCanceled, state: rackcloud.TaskCanceled, phase: PhaseUndo}}},
		},
		"canceled while a retry waited: undo the step tried before": {
			p: func() progress { p := running(2, 2); p.Cancel = true; return p }(), in: input{kind: inClaimed},
			want: plan{next: undoing(2, 0, causeCanceled, ""), do: actParkOrGo, write: true, park: true, cancelChildren: true,
				events: []event{{typ: EventUndoStarted, state: rackcloud.TaskCanceling, phase: PhaseUndo, step: 2, name: "c"}}},
		},
		"step stopped by cancel": {
			p: running(1, 1), in: input{kind: inStepErr, err: "context canceled", canceled: true},
			want: plan{next: undoing(1, 0, causeCanceled, ""), do: actParkOrGo, write: true, park: true, cancelChildren: true,
				record: &record{phase: PhaseRun, idx: 1, name: "b", outcome: stepFailed, attempt: 1, err: "context canceled"},
				events: []event{{typ: EventUndoStarted, state: rackcloud.TaskCanceling, phase: PhaseUndo, step: 1, name: "b"}}},
		},
		"undo skips steps without a compensation": {
			p: undoing(1, 0, causeFailed, "x"), in: input{kind: inUnparked},
			want: plan{next: undoing(0, 1, causeFailed, "x"), do: actRun, write: true},
		},
		"compensation fails for good: go on, fail at the end": {
			p: undoing(0, 3, causeCanceled, ""), in: input{kind: inStepErr, err: "stuck"},
			want: plan{next: func() progress {
				p := undoing(0, 0, causeCanceled, "canceled; compensation step a failed after 3 attempt(s): stuck")
				p.State = rackcloud.TaskFailed
				return p
			}(), do: actStop, write: true, terminal: true,
				record: &record{phase: PhaseUndo, idx: 0, name: "a", outcome: stepFailed, attempt: 3, err: "stuck"},
				events: []event{
					{typ: EventStepFailed, state: rackcloud.TaskCanceling, phase: PhaseUndo, step: 0, name: "a", attempt: 3, err: "stuck"},
					{typ: EventFailed, state: rackcloud.TaskFailed, phase: PhaseUndo, err: "canceled; compensation step a failed after 3 attempt(s): stuck"},
				}},
		},
		"failed child fails the spawning step": {
			p: func() progress { p := running(1, 1); p.AwaitStep = 0; return p }(), in: input{kind: inChildren, err: "child task x (disk) failed: full"},
			want: plan{next: func() progress {
				p := undoing(0, 0, causeFailed, "step a: child task x (disk) failed: full")
				p.FailedStep = "a"
				return p
			}(), do: actParkOrGo, write: true, park: true, cancelChildren: true,
				events: []event{{typ: EventUndoStarted, state: rackcloud.TaskRunning, phase: PhaseUndo, step: 0, name: "a", err: "step a: child task x (disk) failed: full"}}},
		},
		"children succeeded: go on": {
			p: func() progress { p := running(1, 1); p.AwaitStep = 0; return p }(), in: input{kind: inChildren},
			want: plan{next: running(1, 1), do: actRun, write: true},
		},
		"first snooze: give the attempt back, release, say what it waits for": {
			p: running(0, 1), in: input{kind: inSnoozed, snooze: time.Hour, reason: "agent report"},
			want: plan{next: snoozing(running(0, 0), "agent report"), do: actStop, write: true, release: true, delay: time.Hour,
				events: []event{{typ: EventStepWaiting, state: rackcloud.TaskRunning, phase: PhaseRun, step: 0, name: "a", attempt: 1, msg: "agent report"}}},
		},
		"snooze again for the same reason: no event": {
			p: snoozing(running(0, 3), "agent report"), in: input{kind: inSnoozed, snooze: time.Hour, reason: "agent report", waited: 5 * time.Hour},
			want: plan{next: snoozing(running(0, 2), "agent report"), do: actStop, write: true, release: true, delay: time.Hour},
		},
		"snooze for another reason: an event": {
			p: snoozing(running(0, 1), "agent report"), in: input{kind: inSnoozed, snooze: time.Second, reason: "first boot"},
			want: plan{next: snoozing(running(0, 0), "first boot"), do: actStop, write: true, release: true, delay: time.Second,
				events: []event{{typ: EventStepWaiting, state: rackcloud.TaskRunning, phase: PhaseRun, step: 0, name: "a", attempt: 1, msg: "first boot"}}},
		},
		"snooze no longer than the wait timeout left": {
			p: snoozing(running(1, 1), "agent report"), in: input{kind: inSnoozed, snooze: time.Hour, reason: "agent report", waited: 45 * time.Second},
			want: plan{next: snoozing(running(1, 0), "agent report"), do: actStop, write: true, release: true, delay: 15 * time.Second},
		},
		"claimed while snoozing: run the step again, still waiting": {
			p: snoozing(running(1, 1), "agent report"), in: input{kind: inClaimed, waited: 59 * time.Second},
			want: plan{next: snoozing(running(1, 1), "agent report"), do: actRun},
		},
		"claimed after the wait timeout: fail for good, compensate": {
			p: snoozing(running(1, 1), "agent report"), in: input{kind: inClaimed, waited: time.Minute},
			want: timedOut(1),
		},
		"snoozes past the wait timeout: fail at once": {
			p: snoozing(running(1, 2), "agent report"), in: input{kind: inSnoozed, snooze: time.Hour, reason: "agent report", waited: 2 * time.Minute},
			want: timedOut(2),
		},
		"canceled while snoozing: the snoozing step is compensated": {
			p: func() progress { p := snoozing(running(0, 1), "agent report"); p.Cancel = true; return p }(), in: input{kind: inClaimed},
			want: plan{next: undoing(0, 0, causeCanceled, ""), do: actParkOrGo, write: true, park: true, cancelChildren: true,
				events: []event{{typ: EventUndoStarted, state: rackcloud.TaskCanceling, phase: PhaseUndo, step: 0, name: "a"}}},
		},
		"canceled as it snoozes: compensate now, no sleep": {
			p: func() progress { p := running(2, 1); p.Cancel = true; return p }(), in: input{kind: inSnoozed, snooze: time.Hour, reason: "first boot"},
			want: plan{next: undoing(2, 0, causeCanceled, ""), do: actParkOrGo, write: true, park: true, cancelChildren: true,
				events: []event{{typ: EventUndoStarted, state: rackcloud.TaskCanceling, phase: PhaseUndo, step: 2, name: "c"}}},
		},
		"step ok after snoozing: the wait ends": {
			p: snoozing(running(0, 1), "agent report"), in: input{kind: inStepOK},
			want: plan{next: running(1, 1), do: actRun, write: true,
				record: &record{phase: PhaseRun, idx: 0, name: "a", outcome: stepSucceeded, attempt: 1},
				events: []event{{typ: EventStepSucceeded, state: rackcloud.TaskRunning, phase: PhaseRun, step: 0, name: "a", attempt: 1}}},
		},
		"step error after snoozing: a retry ends the wait": {
			p: snoozing(running(1, 1), "agent report"), in: input{kind: inStepErr, err: "boom"},
			want: plan{next: running(1, 1), do: actStop, write: true, release: true, delay: time.Second,
				record: &record{phase: PhaseRun, idx: 1, name: "b", outcome: stepRetrying, attempt: 1, err: "boom"},
				events: []event{{typ: EventStepRetrying, state: rackcloud.TaskRunning, phase: PhaseRun, step: 1, name: "b", attempt: 1, err: "boom"}}},
		},
		"compensation times out: go on with the next one": {
			p: snoozing(undoing(1, 1, causeFailed, "x"), "power off"), in: input{kind: inClaimed, waited: time.Hour},
			want: plan{next: undoing(0, 1, causeFailed, "x; compensation step b failed (permanent): wait timed out: waited 1m0s for power off"), do: actRun, write: true,
				record: &record{phase: PhaseUndo, idx: 1, name: "b", outcome: stepFailed, attempt: 1, err: "wait timed out: waited 1m0s for power off"},
				events: []event{{typ: EventStepFailed, state: rackcloud.TaskRunning, phase: PhaseUndo, step: 1, name: "b", attempt: 1, err: "wait timed out: waited 1m0s for power off"}}},
		},
		"ended tasks stay ended": {
			p: progress{State: rackcloud.TaskSucceeded, Step: 3}, in: input{kind: inStepErr, err: "late"},
			want: plan{next: progress{State: rackcloud.TaskSucceeded, Step: 3}, do: actStop},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := decide(tc.p, s, tc.in, testBackoff)
			if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(plan{}, record{}, event{}, progress{})); d != "" {
				t.Errorf("decide (-want +got):\n%s", d)
			}
		})
	}
}

func TestWaitTimeoutError(t *testing.T) {
	err := waitTimeoutError(5*time.Minute, "agent report")
	require.ErrorIs(t, err, ErrWaitTimeout)
	require.Equal(t, "wait timed out: waited 5m0s for agent report", err.Error())
}

func TestExponentialBackoff(t *testing.T) {
	b := exponentialBackoff(time.Second, 10*time.Second)
	var got []time.Duration
	for a := 1; a <= 6; a++ {
		got = append(got, b(a))
	}
	require.Equal(t, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}, got)
}

// TestDecideProperties drives the machine through random histories (step
// results, crashes, cancels, children, parks, snoozes and wakes) and checks
// its invariants.
func TestDecideProperties(t *testing.T) {
	for seed := range uint64(3000) {
		rng := rand.New(rand.NewPCG(seed, 7))
		if err := simulate(rng); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
	}
}

// simulate runs one random history of one task.
func simulate(rng *rand.Rand) error {
	n := 1 + rng.IntN(4)
	s := shape{}
	budget := 0
	// stuck steps snooze every time they run: only their wait timeout
	// ends them.
	stuck := map[int]bool{}
	for i := range n {
		s.names = append(s.names, fmt.Sprintf("s%d", i))
		m := 1 + rng.IntN(3)
		s.maxAttempts = append(s.maxAttempts, m)
		s.hasUndo = append(s.hasUndo, rng.IntN(2) == 0)
		var timeout time.Duration
		if rng.IntN(2) == 0 {
			timeout = time.Duration(1+rng.IntN(6)) * 10 * time.Second
			stuck[i] = rng.IntN(4) == 0
		}
		s.waitTimeout = append(s.waitTimeout, timeout)
		budget += 2 * m
	}
	// The durable row; the claim increments the attempt.
	db := progress{State: rackcloud.TaskPending, Phase: PhaseRun, AwaitStep: -1}
	var log []string
	fail := func(format string, a ...any) error {
		return fmt.Errorf("%s (shape %+v, stuck %v, history %v)", fmt.Sprintf(format, a...), s, stuck, log)
	}
	started := -1 // highest run step that ran
	succeeded := map[int]bool{}
	ran := map[int]bool{}    // run steps that ran, to the end or not
	undone := map[int]bool{} // compensations that ran
	lastUndo := n
	canceledBy := false
	// The clock, and waiting_since as the database keeps it.
	var now, since time.Duration
	snoozes := 0
	// After a snooze, the step that must run next (unless a cancel, a
	// crash or its timeout came first).
	type pos struct {
		phase Phase
		step  int
	}
	var resume *pos
	claim := func() progress {
		p := db
		if p.State == rackcloud.TaskPending {
			p.State = rackcloud.TaskRunning
		}
		p.Attempt++
		db = p
		return p
	}
	waited := func(p progress) time.Duration {
		if !p.Snoozing {
			return 0
		}
		return now - since
	}
	for iter := 0; ; iter++ {
		if iter > 20*budget+50+snoozes {
			return fail("no end after %d iterations", iter)
		}
		if db.State.Terminal() {
			break
		}
		// A cancel may arrive between any two writes.
		if !canceledBy && db.Phase == PhaseRun && rng.IntN(12) == 0 {
			db.Cancel, canceledBy = true, true
			db.State = rackcloud.TaskCanceling
			log = append(log, "cancel")
		}
		p := claim()
		claimWaited := waited(p)
		log = append(log, fmt.Sprintf("claim %s/%d#%d", p.Phase, p.Step, p.Attempt))
		pl := decide(p, s, input{kind: inClaimed, waited: claimWaited}, testBackoff)
	loop:
		for {
			if pl.write {
				if pl.next.Snoozing && !db.Snoozing {
					since = now
				}
				db = pl.next
			}
			cur := pl.next
			if rc := pl.record; rc != nil && rc.outcome == stepRetrying && rc.attempt >= s.maxAttempts[rc.idx] {
				return fail("retry scheduled after attempt %d of %d", rc.attempt, s.maxAttempts[rc.idx])
			}
			if rc := pl.record; rc != nil && strings.Contains(rc.err, ErrWaitTimeout.Error()) {
				if t := s.waitTimeout[rc.idx]; t == 0 || now-since < t {
					return fail("step %d timed out after %s of %s", rc.idx, now-since, t)
				}
				resume = nil // the wait ended the step
			}
			if pl.terminal != cur.State.Terminal() {
				return fail("terminal flag %v for state %s", pl.terminal, cur.State)
			}
			switch pl.do {
			case actStop:
				if !pl.write {
					return fail("stop without a write")
				}
				if pl.release && cur.Snoozing {
					// Asleep until the snooze is over, or woken earlier.
					d := pl.delay
					if rng.IntN(3) == 0 {
						d = time.Duration(rng.Int64N(int64(d) + 1))
					}
					now += d
				}
				break loop
			case actParkOrGo:
				if rng.IntN(3) == 0 {
					log = append(log, "parked")
					// Parked: the lease is gone, the next claim counts an attempt.
					break loop
				}
				pl = decide(cur, s, input{kind: inUnparked}, testBackoff)
			case actCheckChildren:
				in := input{kind: inChildren}
				if rng.IntN(4) == 0 {
					in.err = "child failed"
				}
				pl = decide(cur, s, in, testBackoff)
			case actRun:
				if cur.Attempt < 1 || cur.Attempt > s.maxAttempts[cur.Step] {
					return fail("runs %s step %d attempt %d of %d", cur.Phase, cur.Step, cur.Attempt, s.maxAttempts[cur.Step])
				}
				if !pl.write && db.Attempt != cur.Attempt {
					return fail("attempt %d runs unrecorded (row has %d)", cur.Attempt, db.Attempt)
				}
				if t := s.waitTimeout[cur.Step]; cur.Snoozing && t > 0 && claimWaited >= t {
					return fail("runs %s step %d after waiting %s of %s", cur.Phase, cur.Step, claimWaited, t)
				}
				if r := resume; r != nil {
					resume = nil
					if r.phase == cur.Phase && r.step != cur.Step {
						return fail("snoozed in %s step %d, runs step %d next", r.phase, r.step, cur.Step)
					}
				}
				if cur.Phase == PhaseRun {
					if cur.Cancel {
						return fail("runs step %d after a cancel", cur.Step)
					}
					for i := range cur.Step {
						if !succeeded[i] {
							return fail("runs step %d before step %d succeeded", cur.Step, i)
						}
					}
					started = max(started, cur.Step)
					ran[cur.Step] = true
				} else {
					if !s.hasUndo[cur.Step] || cur.Step > started || cur.Step > lastUndo {
						return fail("compensates step %d (has undo %v, started up to %d, last undo %d)", cur.Step, s.hasUndo[cur.Step], started, lastUndo)
					}
					lastUndo = cur.Step
					undone[cur.Step] = true
				}
				log = append(log, fmt.Sprintf("run %s/%d#%d", cur.Phase, cur.Step, cur.Attempt))
				r := rng.IntN(10)
				if stuck[cur.Step] && cur.Phase == PhaseRun && r >= 1 {
					r = 9 // snooze
				} else if snoozes > 40 && r == 9 {
					r = 4 // enough snoozing: succeed
				}
				switch {
				case r < 1:
					log = append(log, "crash")
					break loop // the worker dies: no write
				case r < 5:
					if cur.Phase == PhaseRun {
						succeeded[cur.Step] = true
					}
					pl = decide(cur, s, input{kind: inStepOK, spawned: rng.IntN(3) == 0}, testBackoff)
				case r < 9:
					pl = decide(cur, s, input{kind: inStepErr, err: "e", permanent: rng.IntN(5) == 0}, testBackoff)
				default:
					snoozes++
					reason := []string{"agent report", "first boot"}[rng.IntN(2)]
					log = append(log, "snooze "+reason)
					before := cur.Attempt
					pl = decide(cur, s, input{kind: inSnoozed, snooze: time.Duration(1+rng.IntN(20)) * time.Second, reason: reason, waited: waited(cur)}, testBackoff)
					if !pl.next.Snoozing {
						break // canceled or timed out: it ended the step
					}
					if pl.next.Attempt != before-1 || pl.record != nil {
						return fail("a snooze used up attempt %d (now %d, record %+v)", before, pl.next.Attempt, pl.record)
					}
					wantEvent := !cur.Snoozing || cur.WaitingFor != reason
					if got := len(pl.events) == 1 && pl.events[0].typ == EventStepWaiting && pl.events[0].msg == reason; got != wantEvent || len(pl.events) > 1 {
						return fail("snooze for %q after %q (snoozing %v): events %+v", reason, cur.WaitingFor, cur.Snoozing, pl.events)
					}
					if t := s.waitTimeout[cur.Step]; t > 0 && waited(cur)+pl.delay > t {
						return fail("snoozes %s after waiting %s of %s", pl.delay, waited(cur), t)
					}
					resume = &pos{cur.Phase, cur.Step}
				}
			}
		}
	}
	switch db.State {
	case rackcloud.TaskSucceeded:
		if canceledBy {
			return fail("succeeded after a cancel")
		}
		for i := range n {
			if !succeeded[i] {
				return fail("succeeded without step %d", i)
			}
			if stuck[i] {
				return fail("succeeded past stuck step %d", i)
			}
		}
	case rackcloud.TaskCanceled:
		if !canceledBy || db.Err != "" {
			return fail("canceled (cancel %v, err %q)", canceledBy, db.Err)
		}
	case rackcloud.TaskFailed:
		if db.Err == "" {
			return fail("failed without an error")
		}
	default:
		return fail("ended %s", db.State)
	}
	if db.State != rackcloud.TaskSucceeded {
		// Every step that ran (snoozing or not) is compensated.
		for i := range n {
			if ran[i] && s.hasUndo[i] && !undone[i] {
				return fail("step %d ran but was not compensated", i)
			}
		}
	}
	if db.Snoozing {
		return fail("ended still snoozing")
	}
	return nil
}
