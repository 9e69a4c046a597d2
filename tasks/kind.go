package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/rackcloud/rackcloud"
)

// StepFunc runs one step (or one compensation) of a task. It returns the
// step's output, which is marshalled to JSON, recorded, and readable by
// later steps through StepContext.Output; nil is recorded as JSON null.
//
// Steps must be idempotent: a step may run again after its worker died,
// after its lease was lost, or after an error, and must then reach the same
// effect once. StepContext.IdempotencyKey is stable across all attempts of
// the step on every replica; use it as the key of the step's external
// effect. ctx ends when the task is canceled (context.Cause is ErrCanceled),
// when the lease is lost (ErrLeaseLost) or when the engine stops.
type StepFunc func(ctx context.Context, sc *StepContext) (any, error)

// Step is one named step of a kind.
type Step struct {
	// Name is unique within the kind.
	Name string
	// Run does the step's work.
	Run StepFunc
	// Undo, when set, compensates the step; it runs after a failure or a
	// cancel for every step that started, last first, and must tolerate a
	// step that did only part of its work (or none).
	Undo StepFunc
	// MaxAttempts overrides the kind's MaxAttempts for this step.
	MaxAttempts int
	// WaitTimeout bounds how long the step may wait for the machine: once
	// it has been snoozing (see Snooze) for WaitTimeout since its first
	// snooze, it is not run again but fails for good with an error
	// wrapping ErrWaitTimeout, and the task compensates as for any failed
	// step. It bounds the step's Undo alike. 0 means no bound.
	WaitTimeout time.Duration
}

// Kind declares a kind of task: its ordered steps and their retry budget.
type Kind struct {
	// Name identifies the kind ("guest.create"): lower case letters,
	// digits and . _ : - , at most 100 characters.
	Name string
	// Steps run in order; a task succeeds when the last one succeeded and
	// all the children its steps spawned succeeded.
	Steps []Step
	// MaxAttempts bounds the attempts of each step (and of each
	// compensation); 0 means the engine's Config.MaxAttempts.
	MaxAttempts int
	// Validate, when set, checks a submission's params before the task is
	// written; its error is returned wrapped in rackcloud.ErrInvalid.
	Validate func(params json.RawMessage) error
}

var kindName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.:-]{0,99}$`)

func (k *Kind) validate() error {
	if !kindName.MatchString(k.Name) {
		return fmt.Errorf("%w: task kind name %q: want lower case letters, digits and . _ : -", rackcloud.ErrInvalid, k.Name)
	}
	if len(k.Steps) == 0 {
		return fmt.Errorf("%w: task kind %s has no steps", rackcloud.ErrInvalid, k.Name)
	}
	if k.MaxAttempts < 0 {
		return fmt.Errorf("%w: task kind %s: negative MaxAttempts", rackcloud.ErrInvalid, k.Name)
	}
	seen := map[string]bool{}
	for i, s := range k.Steps {
		if s.Name == "" || len(s.Name) > 100 {
			return fmt.Errorf("%w: task kind %s: step %d needs a name of 1 to 100 characters", rackcloud.ErrInvalid, k.Name, i)
		}
		if seen[s.Name] {
			return fmt.Errorf("%w: task kind %s: duplicate step %q", rackcloud.ErrInvalid, k.Name, s.Name)
		}
		seen[s.Name] = true
		if s.Run == nil {
			return fmt.Errorf("%w: task kind %s: step %s has no Run", rackcloud.ErrInvalid, k.Name, s.Name)
		}
		if s.MaxAttempts < 0 {
			return fmt.Errorf("%w: task kind %s: step %s: negative MaxAttempts", rackcloud.ErrInvalid, k.Name, s.Name)
		}
		if s.WaitTimeout < 0 {
			return fmt.Errorf("%w: task kind %s: step %s: negative WaitTimeout", rackcloud.ErrInvalid, k.Name, s.Name)
		}
	}
	return nil
}

func (k *Kind) shape(defaultMax int) shape {
	s := shape{}
	for _, st := range k.Steps {
		m := st.MaxAttempts
		if m == 0 {
			m = k.MaxAttempts
		}
		if m == 0 {
			m = defaultMax
		}
		s.names = append(s.names, st.Name)
		s.maxAttempts = append(s.maxAttempts, m)
		s.hasUndo = append(s.hasUndo, st.Undo != nil)
		s.waitTimeout = append(s.waitTimeout, st.WaitTimeout)
	}
	return s
}

// ErrUnknownKind is returned (wrapped with rackcloud.ErrInvalid) by
// Submit for a kind this engine has not registered: the part of the
// system that owns that change is not running in this process.
var ErrUnknownKind = errors.New("unknown task kind")

// Errors a step's context can end with, and that steps can return.
var (
	// ErrCanceled is the cause of a step's context when its task was
	// canceled, and the error of SpawnChild on a canceled task.
	ErrCanceled = errors.New("task canceled")
	// ErrLeaseLost is the cause of a step's context when this worker no
	// longer holds the task (its lease expired and another worker may have
	// it); nothing the step returns is recorded.
	ErrLeaseLost = errors.New("task lease lost")
	// ErrStopping is the cause of a step's context when the engine stops;
	// the task is released without using up the attempt.
	ErrStopping = errors.New("task engine stopping")
	// ErrWaitTimeout is wrapped by the error of a step that snoozed for
	// longer than its Step.WaitTimeout; the text that follows it says what
	// the step waited for and how long ("waited 5m0s for agent report"),
	// and it is recorded in the step's and the task's error.
	ErrWaitTimeout = errors.New("wait timed out")
)

// MaxWaitReason bounds the reason given to Snooze; a longer one is cut.
const MaxWaitReason = 200

// Snooze returns the error a step returns when what it waits for (the
// agent's report, the first boot) has not happened yet. The task is given
// back at once, holding no worker, and its step runs again after d, or
// sooner when Engine.Wake names its target. The attempt is not used up and
// nothing is recorded as failed: the task shows WaitingFor (reason) and
// WaitingSince, and a step_waiting event is appended on the step's first
// snooze and when the reason changes. Step.WaitTimeout bounds the wait. d
// is how long looking again is pointless; 0 means at once. A step
// canceled while it waits compensates at once.
func Snooze(d time.Duration, reason string) error {
	if reason == "" {
		reason = "the machine"
	}
	if len(reason) > MaxWaitReason {
		reason = strings.ToValidUTF8(reason[:MaxWaitReason], "")
	}
	return &snoozeError{d: max(d, 0), reason: reason}
}

// snoozeError is what Snooze returns.
type snoozeError struct {
	d      time.Duration
	reason string
}

func (e *snoozeError) Error() string {
	return fmt.Sprintf("snoozed for %s, waiting for %s", e.d, e.reason)
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that the step fails at once, without the
// remaining attempts (bad parameters, a resource that is gone).
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err was wrapped by Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// ChildSpec describes a sub-task to spawn from a step.
type ChildSpec struct {
	// Key names the child within the spawning step, so that a step that
	// runs again gets the same child back instead of a second one. Empty
	// means the order of the SpawnChild call in the step ("1", "2"...),
	// which is stable when the step spawns deterministically.
	Key string
	// Kind must be registered with the engine.
	Kind string
	// Target is the resource the child changes; it must not have another
	// active task (the parent's target is taken by the parent).
	Target string
	// Params are marshalled to a JSON object.
	Params any
}

// Child is a sub-task as seen by its parent's steps.
type Child struct {
	rackcloud.Task
	// Key is the ChildSpec.Key it was spawned with.
	Key string `json:"key"`
	// SpawnedBy names the parent's step that spawned it.
	SpawnedBy string `json:"spawned_by"`
	// Result is the output of the child's last step that succeeded
	// (JSON null when none did).
	Result json.RawMessage `json:"result"`
}

// StepContext is a step's view of its task.
type StepContext struct {
	// TaskID, Kind and Target identify the task.
	TaskID string
	Kind   string
	Target string
	// Step and StepIndex name the running step; Phase is PhaseUndo when the
	// step's compensation runs.
	Step      string
	StepIndex int
	Phase     Phase
	// Attempt is this attempt's number, from 1. A step that snoozed runs
	// again under the same number.
	Attempt int
	// Worker is the ID of the engine running the step.
	Worker string
	// Logger carries the task's attributes.
	Logger *slog.Logger

	run          *runner
	params       json.RawMessage
	spawned      int
	found        bool
	waitingSince *time.Time
}

// WaitingSince returns when this step first snoozed (see Snooze), and
// false when it has not snoozed since it last ended an attempt: a step can
// tell how long it has been waiting, to report progress.
func (sc *StepContext) WaitingSince() (time.Time, bool) {
	if sc.waitingSince == nil {
		return time.Time{}, false
	}
	return *sc.waitingSince, true
}

// IdempotencyKey is stable for this step of this task across attempts,
// workers and restarts, and differs between steps, tasks and between a step
// and its compensation: "task/<id>/<phase>/<index>/<name>".
func (sc *StepContext) IdempotencyKey() string {
	return fmt.Sprintf("task/%s/%s/%d/%s", sc.TaskID, sc.Phase, sc.StepIndex, sc.Step)
}

// Params unmarshals the task's parameters into v.
func (sc *StepContext) Params(v any) error {
	if err := json.Unmarshal(sc.params, v); err != nil {
		return Permanent(fmt.Errorf("task %s params: %w", sc.TaskID, err))
	}
	return nil
}

// RawParams returns the task's parameters as submitted.
func (sc *StepContext) RawParams() json.RawMessage { return sc.params }

// Output unmarshals the recorded output of an earlier step (by name) into
// v. It returns an error wrapping rackcloud.ErrNotFound when that step has
// not succeeded.
func (sc *StepContext) Output(step string, v any) error {
	raw, ok := sc.run.outputs[step]
	if !ok {
		return fmt.Errorf("%w: task %s has no output of step %q", rackcloud.ErrNotFound, sc.TaskID, step)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("task %s output of step %s: %w", sc.TaskID, step, err)
	}
	return nil
}

// SpawnChild creates a sub-task of this task, or returns the one this step
// already spawned under the same key. The task goes on to its next step
// only once every child spawned by this step ended; if one failed or was
// canceled, this step fails with that child's error (no retry) and the
// task compensates. The children's results are read by later steps with
// Children. It returns the child's ID.
func (sc *StepContext) SpawnChild(ctx context.Context, c ChildSpec) (string, error) {
	sc.spawned++
	if c.Key == "" {
		c.Key = fmt.Sprint(sc.spawned)
	}
	if sc.Phase != PhaseRun {
		return "", fmt.Errorf("%w: task %s: compensation step %s cannot spawn children", rackcloud.ErrInvalid, sc.TaskID, sc.Step)
	}
	id, err := sc.run.spawn(ctx, sc, c)
	if err != nil {
		return "", err
	}
	sc.found = true
	return id, nil
}

// Children returns the task's children spawned by its earlier steps (and
// by this step), in spawn order, with their results.
func (sc *StepContext) Children(ctx context.Context) ([]Child, error) {
	return sc.run.e.children(ctx, sc.run.e.pool, sc.TaskID, sc.run.k, -1)
}
