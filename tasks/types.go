package tasks

import (
	"encoding/json"
	"time"

	"github.com/rackcloud/rackcloud"
)

// Submission asks for a new task.
type Submission struct {
	// Kind must be registered with the engine.
	Kind string
	// Target is the resource the task changes ("guest/<id>"); empty for
	// none. While the task is active, no other task may have the same
	// target: Submit returns rackcloud.ErrConflict.
	Target string
	// Params are marshalled to a JSON object (a json.RawMessage or []byte
	// is taken as is); nil means {}.
	Params any
}

// Info is a task with its parameters, progress and, from Get, its steps.
type Info struct {
	rackcloud.Task
	RootID string          `json:"root_id"`
	Depth  int             `json:"depth"`
	Params json.RawMessage `json:"params"`
	// Phase is PhaseUndo while compensations run.
	Phase Phase `json:"phase"`
	// Attempt counts the attempts started of the current step; a snooze
	// gives its attempt back, so a snoozing step shows the attempts before.
	Attempt int `json:"attempt"`
	// FailedStep names the step whose error failed the task.
	FailedStep      string `json:"failed_step,omitempty"`
	CancelRequested bool   `json:"cancel_requested"`
	// Waiting is true while the task waits for its children.
	Waiting bool `json:"waiting"`
	// WaitingFor says what the current step waits for (the machine: an
	// agent's report, a first boot) while it snoozes (see Snooze), and
	// WaitingSince since when; both are empty otherwise.
	WaitingFor      string     `json:"waiting_for,omitempty"`
	WaitingSince    *time.Time `json:"waiting_since,omitempty"`
	ChildrenPending int        `json:"children_pending"`
	RunAt           time.Time  `json:"run_at"`
	StartedAt       *time.Time `json:"started_at,omitempty"`
	FinishedAt      *time.Time `json:"finished_at,omitempty"`
	Claims          int        `json:"claims"`
	LastEventSeq    int64      `json:"last_event_seq"`
	Steps           []StepInfo `json:"steps,omitempty"`
}

// StepInfo is the record of one step (or compensation) that ended at least
// one attempt.
type StepInfo struct {
	Phase Phase  `json:"phase"`
	Index int    `json:"index"`
	Name  string `json:"name"`
	// State is succeeded, retrying (an attempt failed, another is due) or
	// failed.
	State    string          `json:"state"`
	Attempts int             `json:"attempts"`
	Output   json.RawMessage `json:"output,omitempty"`
	// Error is the last attempt's error; Errors has every failed attempt.
	Error      string         `json:"error,omitempty"`
	Errors     []AttemptError `json:"errors,omitempty"`
	StartedAt  time.Time      `json:"started_at"`
	FinishedAt time.Time      `json:"finished_at"`
}

// AttemptError is the error of one failed attempt.
type AttemptError struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Error   string    `json:"error"`
}

// Event is one state change of a task. Seq numbers a task's events 1, 2,
// 3... in the order they happened, without gaps.
type Event struct {
	TaskID   string              `json:"task_id"`
	Seq      int64               `json:"seq"`
	At       time.Time           `json:"at"`
	Type     string              `json:"type"`
	State    rackcloud.TaskState `json:"state"`
	Phase    Phase               `json:"phase"`
	Step     int                 `json:"step"`
	StepName string              `json:"step_name,omitempty"`
	Attempt  int                 `json:"attempt,omitempty"`
	Error    string              `json:"error,omitempty"`
	// Message says more about the event: for EventStepWaiting, what the
	// step waits for.
	Message string `json:"message,omitempty"`
}

// Terminal reports whether the event ends its task (no event follows).
func (ev Event) Terminal() bool {
	return ev.Type == EventSucceeded || ev.Type == EventFailed || ev.Type == EventCanceled
}

// ListOptions filter List. Empty fields do not filter.
type ListOptions struct {
	Target   string
	Kind     string
	State    rackcloud.TaskState
	ParentID string
	RootID   string
	// Limit defaults to DefaultListLimit and is capped at MaxListLimit.
	Limit int
	// WithSteps fills Info.Steps.
	WithSteps bool
}

// List limits.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)
