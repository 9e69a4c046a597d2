package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// KeepAliveInterval is how often a task's event stream sends a comment
// while no event comes.
var KeepAliveInterval = 15 * time.Second

// TaskEngine is what the API needs of the task engine (*tasks.Engine).
type TaskEngine interface {
	// Submit writes a task in the caller's transaction.
	Submit(ctx context.Context, db store.Querier, s tasks.Submission) (*tasks.Info, error)
	// Get returns a task with its steps.
	Get(ctx context.Context, id string) (*tasks.Info, error)
	// Cancel asks a task (and its children) to stop.
	Cancel(ctx context.Context, db store.Querier, id string) error
	// Follow calls fn for each event after seq after, then for new ones,
	// until the task ends.
	Follow(ctx context.Context, id string, after int64, fn func(tasks.Event) error) error
	// Wake runs at once the snoozing task of target (waiting for the
	// machine), in the caller's transaction: the endpoints that store what
	// a task waits for (a boot callback, an agent report) call it.
	Wake(ctx context.Context, db store.Querier, target string) (int, error)
}

var _ TaskEngine = (*tasks.Engine)(nil)

// TaskStep is the record of one step that ended at least one attempt.
type TaskStep struct {
	Phase      string          `json:"phase" enum:"run,undo" doc:"run for the step, undo for its compensation."`
	Index      int             `json:"index" doc:"The step's position, from 0."`
	Name       string          `json:"name" doc:"The step's name." example:"create-disk"`
	State      string          `json:"state" enum:"succeeded,retrying,failed" doc:"How the step's last attempt ended."`
	Attempts   int             `json:"attempts" doc:"Attempts so far."`
	Error      string          `json:"error,omitempty" doc:"The last attempt's error."`
	Output     json.RawMessage `json:"output,omitempty" doc:"What the step returned."`
	StartedAt  time.Time       `json:"started_at" doc:"When the first attempt started."`
	FinishedAt time.Time       `json:"finished_at" doc:"When the last attempt ended."`
}

// Task is a durable change: an ordered list of steps.
type Task struct {
	ID              string     `json:"id" format:"uuid" doc:"The task's ID." example:"0b9d2f4e-3c1a-4e5f-8a7b-6c5d4e3f2a1b"`
	Kind            string     `json:"kind" doc:"What the task does." example:"guest.create"`
	ParentID        string     `json:"parent_id,omitempty" format:"uuid" doc:"The task that spawned this one."`
	Target          string     `json:"target,omitempty" doc:"The resource the task changes; at most one active task per target." example:"guest/5f0c6f3e-8d0a-4f4e-9b8e-0a4b5c6d7e8f"`
	State           string     `json:"state" enum:"pending,running,succeeded,failed,canceling,canceled" doc:"The task's state."`
	Phase           string     `json:"phase" enum:"run,undo" doc:"undo while compensations run after a failure or a cancel."`
	Step            int        `json:"step" doc:"Index of the current step."`
	StepName        string     `json:"step_name,omitempty" doc:"Name of the current step." example:"configure"`
	Attempt         int        `json:"attempt" doc:"Attempts started of the current step."`
	Error           string     `json:"error,omitempty" doc:"Why the task failed."`
	FailedStep      string     `json:"failed_step,omitempty" doc:"The step whose error failed the task."`
	CancelRequested bool       `json:"cancel_requested" doc:"True once a cancel was asked for."`
	ChildrenPending int        `json:"children_pending" doc:"Sub-tasks not yet ended."`
	WaitingFor      string     `json:"waiting_for,omitempty" doc:"What the current step waits for from the machine (the task holds no worker meanwhile)." example:"agent report"`
	WaitingSince    *time.Time `json:"waiting_since,omitempty" doc:"Since when the current step waits."`
	LastEventSeq    int64      `json:"last_event_seq" doc:"Sequence number of the task's last event; resume events after it."`
	CreatedAt       time.Time  `json:"created_at" doc:"When the task was submitted."`
	UpdatedAt       time.Time  `json:"updated_at" doc:"When the task last changed."`
	StartedAt       *time.Time `json:"started_at,omitempty" doc:"When a worker first started it."`
	FinishedAt      *time.Time `json:"finished_at,omitempty" doc:"When it ended."`
	Steps           []TaskStep `json:"steps,omitempty" doc:"Steps that ended at least one attempt, in order."`
}

func taskOut(in *tasks.Info) Task {
	t := Task{ID: in.ID, Kind: in.Kind, ParentID: in.ParentID, Target: in.Target, State: string(in.State),
		Phase: string(in.Phase), Step: in.Step, StepName: in.StepName, Attempt: in.Attempt, Error: in.Error,
		FailedStep: in.FailedStep, CancelRequested: in.CancelRequested, ChildrenPending: in.ChildrenPending,
		LastEventSeq: in.LastEventSeq, CreatedAt: in.CreatedAt, UpdatedAt: in.UpdatedAt, StartedAt: in.StartedAt,
		FinishedAt: in.FinishedAt, WaitingFor: in.WaitingFor, WaitingSince: in.WaitingSince}
	if t.Phase == "" {
		t.Phase = string(tasks.PhaseRun)
	}
	for _, s := range in.Steps {
		t.Steps = append(t.Steps, TaskStep{Phase: string(s.Phase), Index: s.Index, Name: s.Name, State: s.State,
			Attempts: s.Attempts, Error: s.Error, Output: s.Output, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt})
	}
	return t
}

// TaskSummary is a task in a list.
type TaskSummary struct {
	ID        string    `json:"id" format:"uuid" doc:"The task's ID."`
	Kind      string    `json:"kind" doc:"What the task does." example:"host.provision"`
	ParentID  string    `json:"parent_id,omitempty" format:"uuid" doc:"The task that spawned this one."`
	Target    string    `json:"target,omitempty" doc:"The resource the task changes."`
	State     string    `json:"state" enum:"pending,running,succeeded,failed,canceling,canceled" doc:"The task's state."`
	Step      int       `json:"step" doc:"Index of the current step."`
	StepName  string    `json:"step_name,omitempty" doc:"Name of the current step."`
	Error     string    `json:"error,omitempty" doc:"Why the task failed."`
	CreatedAt time.Time `json:"created_at" doc:"When the task was submitted."`
	UpdatedAt time.Time `json:"updated_at" doc:"When the task last changed."`
}

// TaskEvent is one state change of a task, as sent on its event stream.
type TaskEvent struct {
	TaskID   string    `json:"task_id" format:"uuid" doc:"The task."`
	Seq      int64     `json:"seq" doc:"Numbers the task's events 1, 2, 3... without gaps; also the SSE id."`
	At       time.Time `json:"at" doc:"When it happened."`
	Type     string    `json:"type" enum:"created,started,step_succeeded,step_failed,step_retrying,step_waiting,undo_started,cancel_requested,succeeded,failed,canceled" doc:"What happened; also the SSE event name."`
	State    string    `json:"state" enum:"pending,running,succeeded,failed,canceling,canceled" doc:"The task's state after the event."`
	Phase    string    `json:"phase" enum:"run,undo" doc:"The task's phase after the event."`
	Step     int       `json:"step" doc:"The step concerned."`
	StepName string    `json:"step_name,omitempty" doc:"Its name."`
	Attempt  int       `json:"attempt,omitempty" doc:"The attempt concerned."`
	Error    string    `json:"error,omitempty" doc:"The error, for failures."`
	Message  string    `json:"message,omitempty" doc:"What a waiting step waits for (step_waiting)." example:"agent report"`
}

// taskAccepted answers a change that became a task.
type taskAccepted struct {
	Location string `header:"Location" doc:"The task's URL: /v1/tasks/{id}."`
	Body     Task
}

func accepted(info *tasks.Info) *taskAccepted {
	return &taskAccepted{Location: "/v1/tasks/" + info.ID, Body: taskOut(info)}
}

// submit writes a task for the change in its transaction, owned by the
// change's project.
func (a *API) submit(ctx context.Context, tx pgx.Tx, ch *change, kind string, params any) (*tasks.Info, error) {
	if a.deps.Tasks == nil {
		return nil, huma.Error503ServiceUnavailable("this server runs no task engine")
	}
	info, err := a.deps.Tasks.Submit(ctx, tx, tasks.Submission{Kind: kind, Target: ch.target, Params: params})
	if errors.Is(err, tasks.ErrUnknownKind) {
		return nil, huma.NewError(http.StatusNotImplemented,
			fmt.Sprintf("%s tasks are not implemented yet: this server runs no worker for them", kind))
	}
	if err != nil {
		return nil, err
	}
	if err := store.SetTaskOwner(ctx, tx, info.ID, ch.project, ch.p.actor()); err != nil {
		return nil, err
	}
	ch.detail = "task " + info.ID
	return info, nil
}

type taskListParams struct {
	Limit  int    `query:"limit" minimum:"1" maximum:"1000" default:"100" doc:"Page size."`
	Cursor string `query:"cursor" maxLength:"512" doc:"Opaque cursor from the previous page's next_cursor or Link header."`
	State  string `query:"state" enum:"pending,running,succeeded,failed,canceling,canceled" doc:"Only tasks in this state."`
	Kind   string `query:"kind" maxLength:"100" doc:"Only tasks of this kind." example:"guest.create"`
	Target string `query:"target" maxLength:"500" doc:"Only tasks changing this resource." example:"host/5f0c6f3e-8d0a-4f4e-9b8e-0a4b5c6d7e8f"`
}

type taskEventsParams struct {
	IDParam
	After       int64  `query:"after" minimum:"0" doc:"Replay events after this sequence number (0: from the start)."`
	LastEventID string `header:"Last-Event-ID" doc:"Set by EventSource clients on reconnect; wins over after." example:"4"`
}

func registerTasks(a *API) {
	tags := []string{"Tasks"}
	register(a, huma.Operation{
		OperationID: "listTasks", Method: http.MethodGet, Path: "/v1/tasks", Summary: "List tasks",
		Description: "Lists tasks, newest first, keyset-paginated. Members and viewers see the tasks of their projects.", Tags: tags,
	}, anyRole, func(ctx context.Context, in *taskListParams) (*listOutput[TaskSummary], error) {
		cur, err := store.ParseTaskCursor(in.Cursor)
		if err != nil {
			return nil, huma.Error422UnprocessableEntity("malformed cursor", &huma.ErrorDetail{Location: "query.cursor", Message: "not a cursor from this API", Value: in.Cursor})
		}
		rows, err := store.ListTasks(ctx, a.deps.Pool, store.TaskFilter{Before: cur, Limit: in.Limit + 1, State: in.State,
			Kind: in.Kind, Target: in.Target, Projects: principalFrom(ctx).projectFilter()})
		if err != nil {
			return nil, a.problem(err)
		}
		out := &listOutput[TaskSummary]{}
		if len(rows) > in.Limit {
			rows = rows[:in.Limit]
			out.Body.NextCursor = store.TaskCursor(rows[len(rows)-1])
			q := url.Values{"limit": {strconv.Itoa(in.Limit)}, "cursor": {out.Body.NextCursor}}
			for k, v := range map[string]string{"state": in.State, "kind": in.Kind, "target": in.Target} {
				if v != "" {
					q.Set(k, v)
				}
			}
			out.Link = "</v1/tasks?" + q.Encode() + `>; rel="next"`
		}
		out.Body.Items = make([]TaskSummary, 0, len(rows))
		for _, t := range rows {
			out.Body.Items = append(out.Body.Items, TaskSummary{ID: t.ID, Kind: t.Kind, ParentID: t.ParentID, Target: t.Target,
				State: string(t.State), Step: t.Step, StepName: t.StepName, Error: t.Error, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt})
		}
		return out, nil
	})

	register(a, huma.Operation{
		OperationID: "getTask", Method: http.MethodGet, Path: "/v1/tasks/{id}", Summary: "Get a task",
		Description: "Returns a task with the steps that ran so far. The ETag changes with every event of the task.",
		Tags:        tags, Errors: []int{http.StatusNotFound},
	}, anyRole, func(ctx context.Context, in *IDParam) (*itemOutput[Task], error) {
		info, err := a.visibleTask(ctx, in.ID)
		if err != nil {
			return nil, err
		}
		return item(taskOut(info), info.LastEventSeq), nil
	})

	register(a, huma.Operation{
		OperationID: "cancelTask", Method: http.MethodPost, Path: "/v1/tasks/{id}/cancel", Summary: "Cancel a task",
		Description: "Asks the task and its sub-tasks to stop; each runs the compensations of the steps it started and ends canceled. Returns the task; 409 when it already ended.",
		Tags:        tags, DefaultStatus: http.StatusAccepted, Errors: []int{http.StatusNotFound, http.StatusConflict},
	}, writers, func(ctx context.Context, in *IDParam) (*taskAccepted, error) {
		ch := a.newChange(ctx, "cancelTask", "task/"+in.ID)
		info, err := a.visibleTask(ctx, in.ID)
		if err != nil {
			return nil, err
		}
		ch.project, _ = store.TaskOwner(ctx, a.deps.Pool, in.ID)
		err = a.run(ctx, ch, func(tx pgx.Tx) error { return a.deps.Tasks.Cancel(ctx, tx, in.ID) })
		if err != nil {
			return nil, err
		}
		if got, gerr := a.deps.Tasks.Get(ctx, in.ID); gerr == nil {
			info = got
		}
		return accepted(info), nil
	})

	a.access["streamTaskEvents"] = anyRole
	huma.Register(a.huma, huma.Operation{
		OperationID: "streamTaskEvents", Method: http.MethodGet, Path: "/v1/tasks/{id}/events",
		Summary:     "Stream a task's events",
		Description: "Server-sent events: first the task's recorded events after `after` (or Last-Event-ID), then new ones as they happen; the stream ends after the task's last event (succeeded, failed or canceled). Each message has `id` = seq, `event` = type and `data` = the TaskEvent as JSON.\n\nAllowed roles: " + anyRole.String() + ".",
		Tags:        tags,
		Errors:      []int{http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound},
		Responses: map[string]*huma.Response{"200": {Description: "A text/event-stream of TaskEvent messages.",
			Content: map[string]*huma.MediaType{"text/event-stream": {Schema: &huma.Schema{Type: huma.TypeString,
				Description: "SSE frames: `id: <seq>`, `event: <type>`, `data: <TaskEvent JSON>`.",
				Examples:    []any{"id: 1\nevent: created\ndata: {\"task_id\":\"0b9d2f4e-3c1a-4e5f-8a7b-6c5d4e3f2a1b\",\"seq\":1,\"type\":\"created\",\"state\":\"pending\",\"phase\":\"run\",\"step\":0}\n\n"}}}}}},
	}, func(ctx context.Context, in *taskEventsParams) (*huma.StreamResponse, error) {
		if _, err := a.visibleTask(ctx, in.ID); err != nil {
			return nil, err
		}
		after := in.After
		if in.LastEventID != "" {
			n, err := strconv.ParseInt(in.LastEventID, 10, 64)
			if err != nil || n < 0 {
				return nil, huma.Error422UnprocessableEntity("Last-Event-ID must be an event's seq")
			}
			after = n
		}
		return &huma.StreamResponse{Body: func(hctx huma.Context) {
			hctx.SetHeader("Content-Type", "text/event-stream")
			hctx.SetHeader("Cache-Control", "no-cache")
			hctx.SetStatus(http.StatusOK)
			w := hctx.BodyWriter()
			var mu sync.Mutex // the follower and the keep-alive both write
			write := func(s string) error {
				mu.Lock()
				defer mu.Unlock()
				if _, err := io.WriteString(w, s); err != nil {
					return err
				}
				if f, ok := w.(http.Flusher); ok {
					f.Flush()
				}
				return nil
			}
			if write(": following task "+in.ID+"\n\n") != nil {
				return
			}
			// A comment now and then keeps proxies from closing a stream
			// whose task is in a long step.
			done := make(chan struct{})
			var wg sync.WaitGroup
			defer func() {
				close(done)
				wg.Wait() // nothing writes once the handler returns
			}()
			wg.Add(1)
			go func() {
				defer wg.Done()
				t := time.NewTicker(KeepAliveInterval)
				defer t.Stop()
				for {
					select {
					case <-done:
						return
					case <-t.C:
						_ = write(": keep-alive\n\n")
					}
				}
			}()
			err := a.deps.Tasks.Follow(hctx.Context(), in.ID, after, func(ev tasks.Event) error {
				b, err := json.Marshal(TaskEvent{TaskID: ev.TaskID, Seq: ev.Seq, At: ev.At, Type: ev.Type, State: string(ev.State),
					Phase: string(ev.Phase), Step: ev.Step, StepName: ev.StepName, Attempt: ev.Attempt, Error: ev.Error, Message: ev.Message})
				if err != nil {
					return err
				}
				return write(fmt.Sprintf("id: %d\nevent: %s\ndata: %s\n\n", ev.Seq, ev.Type, b))
			})
			if err != nil && !errors.Is(err, context.Canceled) {
				a.log.Warn("api: task events", "task", in.ID, "err", err)
			}
		}}, nil
	})
}

// visibleTask returns a task the caller may see, else 404.
func (a *API) visibleTask(ctx context.Context, id string) (*tasks.Info, error) {
	if a.deps.Tasks == nil {
		return nil, huma.Error503ServiceUnavailable("this server runs no task engine")
	}
	info, err := a.deps.Tasks.Get(ctx, id)
	if err != nil {
		return nil, a.problem(notFound(err, "task", id))
	}
	p := principalFrom(ctx)
	if !p.staff() {
		owner, err := store.TaskOwner(ctx, a.deps.Pool, info.RootID)
		if err != nil {
			return nil, a.problem(notFound(err, "task", id))
		}
		if owner == "" || !p.sees(owner) {
			return nil, a.problem(notFound(rackcloud.ErrNotFound, "task", id))
		}
	}
	return info, nil
}
