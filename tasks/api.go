package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// taskRow is a tasks row as read by taskColumns.
type taskRow struct {
	ID              string          `db:"id"`
	RootID          string          `db:"root_id"`
	ParentID        *string         `db:"parent_id"`
	ParentStep      *int            `db:"parent_step"`
	SpawnKey        *string         `db:"spawn_key"`
	Depth           int             `db:"depth"`
	Kind            string          `db:"kind"`
	Target          *string         `db:"target"`
	Params          json.RawMessage `db:"params"`
	State           string          `db:"state"`
	Phase           string          `db:"phase"`
	UndoCause       string          `db:"undo_cause"`
	Step            int             `db:"step"`
	StepName        string          `db:"step_name"`
	Attempt         int             `db:"attempt"`
	Error           string          `db:"error"`
	FailedStep      string          `db:"failed_step"`
	CancelRequested bool            `db:"cancel_requested"`
	ChildrenPending int             `db:"children_pending"`
	Waiting         bool            `db:"waiting"`
	AwaitStep       *int            `db:"await_step"`
	RunAt           time.Time       `db:"run_at"`
	LeaseToken      *int64          `db:"lease_token"`
	Claims          int             `db:"claims"`
	EventSeq        int64           `db:"event_seq"`
	CreatedAt       time.Time       `db:"created_at"`
	UpdatedAt       time.Time       `db:"updated_at"`
	StartedAt       *time.Time      `db:"started_at"`
	FinishedAt      *time.Time      `db:"finished_at"`
	WaitingSince    *time.Time      `db:"waiting_since"`
	WaitingFor      string          `db:"waiting_for"`
}

func (r *taskRow) task() rackcloud.Task {
	t := rackcloud.Task{
		ID:        r.ID,
		Kind:      r.Kind,
		ParentID:  deref(r.ParentID),
		Target:    deref(r.Target),
		State:     rackcloud.TaskState(r.State),
		Step:      max(r.Step, 0),
		StepName:  r.StepName,
		Error:     r.Error,
		CreatedAt: r.CreatedAt,
		UpdatedAt: r.UpdatedAt,
	}
	return t
}

func (r *taskRow) info() Info {
	return Info{
		Task:            r.task(),
		RootID:          r.RootID,
		Depth:           r.Depth,
		Params:          r.Params,
		Phase:           Phase(r.Phase),
		Attempt:         r.Attempt,
		FailedStep:      r.FailedStep,
		CancelRequested: r.CancelRequested,
		Waiting:         r.Waiting,
		ChildrenPending: r.ChildrenPending,
		RunAt:           r.RunAt,
		StartedAt:       r.StartedAt,
		FinishedAt:      r.FinishedAt,
		Claims:          r.Claims,
		LastEventSeq:    r.EventSeq,
		WaitingFor:      r.WaitingFor,
		WaitingSince:    r.WaitingSince,
	}
}

func (r *taskRow) progress() progress {
	p := progress{
		State:      rackcloud.TaskState(r.State),
		Phase:      Phase(r.Phase),
		Step:       r.Step,
		Attempt:    r.Attempt,
		Cancel:     r.CancelRequested,
		AwaitStep:  -1,
		UndoCause:  r.UndoCause,
		Err:        r.Error,
		Snoozing:   r.WaitingSince != nil,
		WaitingFor: r.WaitingFor,
	}
	p.FailedStep = r.FailedStep
	if r.AwaitStep != nil {
		p.AwaitStep = *r.AwaitStep
	}
	return p
}

func deref[T any](p *T) T {
	var z T
	if p == nil {
		return z
	}
	return *p
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func checkID(id string) error {
	if !uuidRE.MatchString(id) {
		return fmt.Errorf("%w: task id %q is not a UUID", rackcloud.ErrInvalid, id)
	}
	return nil
}

// marshalParams turns Submission.Params into a JSON object.
func marshalParams(v any) (json.RawMessage, error) {
	var raw []byte
	switch p := v.(type) {
	case nil:
		return json.RawMessage(`{}`), nil
	case json.RawMessage:
		raw = p
	case []byte:
		raw = p
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%w: task params: %v", rackcloud.ErrInvalid, err)
		}
		raw = b
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%w: task params must be a JSON object", rackcloud.ErrInvalid)
	}
	return raw, nil
}

func (e *Engine) checkSubmission(kind, target string, params any) (*registered, json.RawMessage, error) {
	k := e.kind(kind)
	if k == nil {
		return nil, nil, fmt.Errorf("%w: %w %q", rackcloud.ErrInvalid, ErrUnknownKind, kind)
	}
	if len(target) > 500 || strings.ContainsAny(target, "\x00") {
		return nil, nil, fmt.Errorf("%w: task target must be at most 500 characters without NUL", rackcloud.ErrInvalid)
	}
	raw, err := marshalParams(params)
	if err != nil {
		return nil, nil, err
	}
	if k.Validate != nil {
		if err := k.Validate(raw); err != nil {
			return nil, nil, fmt.Errorf("%w: %s params: %v", rackcloud.ErrInvalid, kind, err)
		}
	}
	return k, raw, nil
}

// Submit writes a new pending task through db, which may be the caller's
// transaction (the task then exists, and is picked up, only if that
// transaction commits) or a pool. A bad kind or params is
// rackcloud.ErrInvalid; an active task on the same target is
// rackcloud.ErrConflict, returned without aborting the caller's
// transaction.
func (e *Engine) Submit(ctx context.Context, db store.Querier, s Submission) (*Info, error) {
	k, raw, err := e.checkSubmission(s.Kind, s.Target, s.Params)
	if err != nil {
		return nil, err
	}
	var target *string
	if s.Target != "" {
		target = &s.Target
	}
	rows, err := db.Query(ctx, sqlSubmit, s.Kind, target, raw, k.Steps[0].Name)
	if err != nil {
		return nil, fmt.Errorf("submit %s task: %w", s.Kind, store.MapError(err))
	}
	type submitted struct {
		taskRow
		Notified int64 `db:"notified"`
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByName[submitted])
	if err != nil {
		return nil, fmt.Errorf("submit %s task: %w", s.Kind, store.MapError(err))
	}
	if len(got) == 0 {
		var holder string
		if err := db.QueryRow(ctx, sqlActiveOnTarget, s.Target).Scan(&holder); err != nil {
			holder = "another task"
		} else {
			holder = "task " + holder
		}
		return nil, fmt.Errorf("%w: %s already has an active task (%s)", rackcloud.ErrConflict, s.Target, holder)
	}
	e.m.submitted.WithLabelValues(s.Kind).Inc()
	inf := got[0].info()
	return &inf, nil
}

// Get returns a task with its steps, or rackcloud.ErrNotFound.
func (e *Engine) Get(ctx context.Context, id string) (*Info, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	r, err := e.getRow(ctx, id)
	if err != nil {
		return nil, err
	}
	inf := r.info()
	if inf.Steps, err = e.steps(ctx, id); err != nil {
		return nil, err
	}
	return &inf, nil
}

func (e *Engine) getRow(ctx context.Context, id string) (*taskRow, error) {
	return e.getRowFrom(ctx, e.pool, id)
}

func (e *Engine) getRowFrom(ctx context.Context, db store.Querier, id string) (*taskRow, error) {
	rows, err := db.Query(ctx, sqlGet, id)
	if err != nil {
		return nil, fmt.Errorf("get task %s: %w", id, store.MapError(err))
	}
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToAddrOfStructByName[taskRow])
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("%w: task %s", rackcloud.ErrNotFound, id)
		}
		return nil, fmt.Errorf("get task %s: %w", id, store.MapError(err))
	}
	return r, nil
}

func (e *Engine) steps(ctx context.Context, id string) ([]StepInfo, error) {
	rows, err := e.pool.Query(ctx, sqlSteps, id)
	if err != nil {
		return nil, fmt.Errorf("steps of task %s: %w", id, err)
	}
	var out []StepInfo
	for rows.Next() {
		var s StepInfo
		var errs []byte
		if err := rows.Scan(&s.Phase, &s.Index, &s.Name, &s.State, &s.Attempts, &s.Output, &s.Error, &errs, &s.StartedAt, &s.FinishedAt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("steps of task %s: %w", id, err)
		}
		if err := json.Unmarshal(errs, &s.Errors); err != nil {
			rows.Close()
			return nil, fmt.Errorf("steps of task %s: errors: %w", id, err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("steps of task %s: %w", id, err)
	}
	return out, nil
}

// List returns tasks, newest first, filtered by opts.
func (e *Engine) List(ctx context.Context, opts ListOptions) ([]Info, error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, fmt.Sprintf(cond, len(args)))
	}
	if opts.Target != "" {
		add("target = $%d", opts.Target)
	}
	if opts.Kind != "" {
		add("kind = $%d", opts.Kind)
	}
	if opts.State != "" {
		add("state = $%d", string(opts.State))
	}
	for _, f := range []struct{ col, v string }{{"parent_id", opts.ParentID}, {"root_id", opts.RootID}} {
		if f.v == "" {
			continue
		}
		if err := checkID(f.v); err != nil {
			return nil, err
		}
		add(f.col+" = $%d", f.v)
	}
	q := `SELECT ` + taskColumns + ` FROM tasks`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += fmt.Sprintf(` ORDER BY created_at DESC, id DESC LIMIT $%d`, len(args))
	rows, err := e.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", store.MapError(err))
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[taskRow])
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", store.MapError(err))
	}
	out := make([]Info, 0, len(rs))
	for i := range rs {
		inf := rs[i].info()
		if opts.WithSteps {
			if inf.Steps, err = e.steps(ctx, inf.ID); err != nil {
				return nil, err
			}
		}
		out = append(out, inf)
	}
	return out, nil
}

// Cancel requests the cancel of a task and of all its descendants. Each
// active one stops its running step (its context ends with ErrCanceled),
// runs the compensations of the steps it started, and ends canceled. A
// task already compensating after a failure is left to fail. Canceling a
// task that already ended is rackcloud.ErrConflict; an unknown one is
// rackcloud.ErrNotFound. Cancel returns once the request is recorded.
//
// db is where the request is written: the engine's pool when nil, or the
// caller's transaction, so that the request and the caller's own writes
// (an audit event) commit or roll back together. Workers hear of it only
// after that commit. In a transaction the write runs under a savepoint
// that is retried on a deadlock with the tree's own workers.
func (e *Engine) Cancel(ctx context.Context, db store.Querier, id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	if db == nil {
		db = e.pool
	}
	r, err := e.getRowFrom(ctx, db, id)
	if err != nil {
		return err
	}
	if rackcloud.TaskState(r.State).Terminal() {
		return fmt.Errorf("%w: task %s already %s", rackcloud.ErrConflict, id, r.State)
	}
	if _, err := e.cancelTreeIn(ctx, db, id, true); err != nil {
		return err
	}
	return nil
}

// cancelTree runs sqlCancel on the pool.
func (e *Engine) cancelTree(ctx context.Context, id string, self bool) (int64, error) {
	return e.cancelTreeIn(ctx, e.pool, id, self)
}

// cancelTreeIn runs sqlCancel in db, retrying on deadlocks with
// concurrent writers of the same tree.
func (e *Engine) cancelTreeIn(ctx context.Context, db store.Querier, id string, self bool) (int64, error) {
	var n int64
	err := retryStatement(ctx, db, func(q store.Querier) error {
		var notes int64
		return q.QueryRow(ctx, sqlCancel, id, self).Scan(&n, &notes)
	})
	if err != nil {
		return 0, fmt.Errorf("cancel task %s: %w", id, store.MapError(err))
	}
	return n, nil
}

// Wake tells the task on target that what its step waits for may have
// happened: if its current step snoozed (see Snooze), it is claimable now
// and the workers are notified, instead of sleeping out the snooze. The
// snoozing sub-tasks of that task are woken too. A task in a retry's
// backoff, parked for its children or that never snoozed is left alone; a
// task a worker is running is marked, so that if its step snoozes next
// (it looked before the event arrived) it runs again at once. Wake returns
// how many snoozing tasks it woke; 0 is no error (nothing was waiting, or
// the event came before the step looked).
//
// db is the engine's pool when nil, or the caller's transaction, so that
// the wake and the awaited event (an agent's report) commit together: the
// notification is sent at commit, and a worker that wakes sees the event.
// The rows woken stay locked until then; keep that transaction short. Wake
// is one statement on indexes, safe on any replica, with or without
// workers.
func (e *Engine) Wake(ctx context.Context, db store.Querier, target string) (int, error) {
	if target == "" {
		return 0, fmt.Errorf("%w: wake: empty target", rackcloud.ErrInvalid)
	}
	if db == nil {
		db = e.pool
	}
	var n int
	err := retryStatement(ctx, db, func(q store.Querier) error {
		var notes int64
		return q.QueryRow(ctx, sqlWake, target).Scan(&n, &notes)
	})
	if err != nil {
		return 0, fmt.Errorf("wake tasks of %s: %w", target, store.MapError(err))
	}
	e.m.woken.Add(float64(n))
	return n, nil
}

// Events returns up to limit events of a task with Seq > after, in order.
func (e *Engine) Events(ctx context.Context, id string, after int64, limit int) ([]Event, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > MaxListLimit {
		limit = MaxListLimit
	}
	rows, err := e.pool.Query(ctx, sqlEvents, id, after, limit)
	if err != nil {
		return nil, fmt.Errorf("events of task %s: %w", id, err)
	}
	evs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Event, error) {
		var ev Event
		err := row.Scan(&ev.TaskID, &ev.Seq, &ev.At, &ev.Type, &ev.State, &ev.Phase, &ev.Step, &ev.StepName, &ev.Attempt, &ev.Error, &ev.Message)
		return ev, err
	})
	if err != nil {
		return nil, fmt.Errorf("events of task %s: %w", id, err)
	}
	return evs, nil
}

// watchFor is how long one watch of Follow asks for notifications; it is
// renewed at half of it.
const watchFor = time.Minute

// Follow calls fn for every event of task id with Seq > after, in order,
// first those already recorded, then new ones as they happen (woken by
// LISTEN/NOTIFY, with a poll every Config.PollInterval as a safety net).
// It returns nil after the task's terminal event, fn's error if fn fails,
// rackcloud.ErrNotFound for an unknown task, or ctx's error.
func (e *Engine) Follow(ctx context.Context, id string, after int64, fn func(Event) error) error {
	if err := checkID(id); err != nil {
		return err
	}
	wake, unsub := e.hub.subscribe(id)
	defer unsub()
	// Ask for notifications before reading, so no event falls in between.
	watch := func() error {
		var state string
		var seq int64
		err := e.pool.QueryRow(ctx, sqlWatch, id, watchFor.Milliseconds()).Scan(&state, &seq)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: task %s", rackcloud.ErrNotFound, id)
		}
		if err != nil {
			return fmt.Errorf("follow task %s: %w", id, err)
		}
		return nil
	}
	if err := watch(); err != nil {
		return err
	}
	watched := time.Now()
	tick := time.NewTicker(e.cfg.PollInterval)
	defer tick.Stop()
	for {
		if time.Since(watched) > watchFor/2 {
			if err := watch(); err != nil {
				return err
			}
			watched = time.Now()
		}
		evs, err := e.Events(ctx, id, after, MaxListLimit)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if err := fn(ev); err != nil {
				return err
			}
			after = ev.Seq
			if ev.Terminal() {
				return nil
			}
		}
		if len(evs) == MaxListLimit {
			continue
		}
		if len(evs) == 0 {
			// The terminal event may be older than after.
			r, err := e.getRow(ctx, id)
			if err != nil {
				return err
			}
			if rackcloud.TaskState(r.State).Terminal() && r.EventSeq <= after {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-tick.C:
		}
	}
}

// children lists the children of task id spawned by step (all when
// step < 0), naming the spawning step from kind k when known.
func (e *Engine) children(ctx context.Context, db store.Querier, id string, k *registered, step int) ([]Child, error) {
	rows, err := db.Query(ctx, sqlChildren, id, step)
	if err != nil {
		return nil, fmt.Errorf("children of task %s: %w", id, err)
	}
	type childRow struct {
		taskRow
		Result json.RawMessage `db:"result"`
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[childRow])
	if err != nil {
		return nil, fmt.Errorf("children of task %s: %w", id, err)
	}
	out := make([]Child, 0, len(rs))
	for _, r := range rs {
		c := Child{Task: r.task(), Key: deref(r.SpawnKey), Result: r.Result}
		if c.Result == nil {
			c.Result = json.RawMessage("null")
		}
		if k != nil && r.ParentStep != nil && *r.ParentStep < len(k.Steps) {
			c.SpawnedBy = k.Steps[*r.ParentStep].Name
		}
		out = append(out, c)
	}
	return out, nil
}
