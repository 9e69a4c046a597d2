package tasks_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/tasks"
)

// longSnooze is so long that only Wake (or a wait timeout) can explain a
// step running again within a test.
const longSnooze = time.Hour

// flags stands for what the machine reports: a row per target whose
// awaited event arrived.
func flags(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `CREATE TABLE wait_flags (target text PRIMARY KEY)`)
	require.NoError(t, err)
}

func flagged(ctx context.Context, pool *pgxpool.Pool, target string) (bool, error) {
	var ok bool
	err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM wait_flags WHERE target = $1)`, target).Scan(&ok)
	return ok, err
}

// waitRig is a test's database with wait_flags, and a waitKind.
type waitRig struct {
	pool *pgxpool.Pool
	j    journal
	runs atomic.Int64
	kind tasks.Kind
}

func newWaitRig(t *testing.T, kind string, timeout time.Duration) *waitRig {
	r := &waitRig{pool: pgtest.DB(t)}
	flags(t, r.pool)
	r.kind = waitKind(kind, r.pool, &r.j, &r.runs, timeout)
	return r
}

// waitKind has steps before, await and after; await snoozes (longSnooze,
// "agent report") until wait_flags has the target named by the param
// "flag", else the task's target, counting its runs. before and await
// have compensations, journaled in j.
func waitKind(name string, pool *pgxpool.Pool, j *journal, runs *atomic.Int64, timeout time.Duration) tasks.Kind {
	undo := func(step string) tasks.StepFunc {
		return func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			j.add("undo " + step)
			return nil, nil
		}
	}
	return tasks.Kind{Name: name, MaxAttempts: 1, Steps: []tasks.Step{
		{Name: "before", Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			j.add("run before")
			return nil, nil
		}, Undo: undo("before")},
		{Name: "await", WaitTimeout: timeout, Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			runs.Add(1)
			j.add("run await")
			var p struct {
				Flag string `json:"flag"`
			}
			if err := sc.Params(&p); err != nil {
				return nil, err
			}
			if p.Flag == "" {
				p.Flag = sc.Target
			}
			ok, err := flagged(ctx, pool, p.Flag)
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, tasks.Snooze(longSnooze, "agent report")
			}
			return "reported", nil
		}, Undo: undo("await")},
		noop("after"),
	}}
}

// waitSnoozed polls until task id's step snoozed and was given back.
func waitSnoozed(t *testing.T, e *tasks.Engine, id string) *tasks.Info {
	t.Helper()
	var inf *tasks.Info
	waitFor(t, "task "+id+" to snooze", func() bool {
		var err error
		inf, err = e.Get(context.Background(), id)
		require.NoError(t, err)
		return inf.WaitingSince != nil && inf.RunAt.After(time.Now().Add(longSnooze/2))
	})
	return inf
}

// eventTypes returns the types of task id's events, with the message of
// step_waiting events.
func eventTypes(t *testing.T, e *tasks.Engine, id string) []string {
	t.Helper()
	evs, err := e.Events(context.Background(), id, 0, 0)
	require.NoError(t, err)
	var out []string
	for _, ev := range evs {
		s := ev.Type
		if ev.Type == tasks.EventStepWaiting {
			s += " " + ev.StepName + ": " + ev.Message
		}
		out = append(out, s)
	}
	return out
}

func TestWakeRunsTheSnoozedStepAtOnce(t *testing.T) {
	t.Parallel()
	r := newWaitRig(t, "t.wait", 0)
	pool := r.pool
	ctx := context.Background()
	cfg := testConfig(t)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	e := startEngine(t, pool, cfg, r.kind)
	inf := submit(t, e, pool, "t.wait", "host/1", nil)

	got := waitSnoozed(t, e, inf.ID)
	require.Equal(t, rackcloud.TaskRunning, got.State)
	require.Equal(t, "await", got.StepName)
	require.Equal(t, "agent report", got.WaitingFor)
	require.Equal(t, 0, got.Attempt, "the snooze gave its attempt back")
	require.EqualValues(t, 1, r.runs.Load())
	waitFor(t, "the snoozed gauge", func() bool {
		return gaugeValue(t, reg, "rackcloud_tasks_queue_depth", "snoozed") == 1
	})

	// A wake rolled back with the caller's transaction changes nothing.
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	n, err := e.Wake(ctx, tx, "host/1")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NoError(t, tx.Rollback(ctx))
	again, err := e.Get(ctx, inf.ID)
	require.NoError(t, err)
	require.Equal(t, got.RunAt, again.RunAt)

	// The event and the wake commit together.
	tx, err = pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO wait_flags VALUES ('host/1')`)
	require.NoError(t, err)
	n, err = e.Wake(ctx, tx, "host/1")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NoError(t, tx.Commit(ctx))

	done := waitTask(t, e, inf.ID, rackcloud.TaskSucceeded, rackcloud.TaskFailed)
	require.Equal(t, rackcloud.TaskSucceeded, done.State, done.Error)
	require.EqualValues(t, 2, r.runs.Load(), "it ran again because of the wake, not the hour-long snooze")
	require.Empty(t, done.WaitingFor)
	require.Nil(t, done.WaitingSince)
	require.Equal(t, 1, done.Steps[1].Attempts)
	require.Equal(t, []string{"created", "started", "step_succeeded", "step_waiting await: agent report",
		"started", "step_succeeded", "step_succeeded", "succeeded"}, eventTypes(t, e, inf.ID))
	require.Equal(t, 2.0, counterValue(t, reg, "rackcloud_tasks_woken_total"), "the rolled-back wake counts too")

	// Nothing snoozes on the target any more; unknown targets are no error.
	for _, target := range []string{"host/1", "host/none"} {
		n, err = e.Wake(ctx, nil, target)
		require.NoError(t, err)
		require.Zero(t, n)
	}
	_, err = e.Wake(ctx, nil, "")
	require.ErrorIs(t, err, rackcloud.ErrInvalid)
}

// A step may snooze any number of times: its attempt is given back each
// time, and only a change of reason is logged.
func TestSnoozingDoesNotUseUpAttempts(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	var calls atomic.Int64
	var mu sync.Mutex // steps run one after the other, on other goroutines
	var firstSince time.Time
	var sinceErr error
	k := tasks.Kind{Name: "t.snooze100", MaxAttempts: 1, Steps: []tasks.Step{
		noop("before"),
		{Name: "poll", Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			mu.Lock()
			defer mu.Unlock()
			n := calls.Add(1)
			since, waiting := sc.WaitingSince()
			switch {
			case sc.Attempt != 1:
				sinceErr = fmt.Errorf("call %d: attempt %d", n, sc.Attempt)
			case n == 1 && waiting:
				sinceErr = fmt.Errorf("call 1: waiting since %s", since)
			case n == 2:
				firstSince = since
			case n > 2 && !since.Equal(firstSince):
				sinceErr = fmt.Errorf("call %d: waiting since %s, not %s", n, since, firstSince)
			}
			switch {
			case n <= 50:
				return nil, tasks.Snooze(0, "agent report")
			case n <= 100:
				return nil, tasks.Snooze(0, "first boot")
			}
			return n, nil
		}},
	}}
	e := startEngine(t, pool, testConfig(t), k)
	inf := submit(t, e, pool, "t.snooze100", "host/2", nil)
	done := waitTask(t, e, inf.ID, rackcloud.TaskSucceeded, rackcloud.TaskFailed)
	require.Equal(t, rackcloud.TaskSucceeded, done.State, done.Error)
	mu.Lock()
	defer mu.Unlock()
	require.NoError(t, sinceErr)
	require.False(t, firstSince.IsZero())
	require.EqualValues(t, 101, calls.Load())
	require.Equal(t, 1, done.Steps[1].Attempts)
	require.Empty(t, done.Steps[1].Errors)
	require.Equal(t, 101, done.Claims)
	evs := eventTypes(t, e, inf.ID)
	var waits []string
	for _, ev := range evs {
		if ev != "started" {
			waits = append(waits, ev)
		}
	}
	require.Equal(t, []string{"created", "step_succeeded", "step_waiting poll: agent report",
		"step_waiting poll: first boot", "step_succeeded", "succeeded"}, waits)
}

// A step that waits longer than its WaitTimeout fails for good and the
// task compensates: here the wait is made old in the database, standing
// for a clock that moved on.
func TestWaitTimeoutFailsTheStepAndCompensates(t *testing.T) {
	t.Parallel()
	r := newWaitRig(t, "t.timeout", longSnooze)
	pool := r.pool
	ctx := context.Background()
	e := startEngine(t, pool, testConfig(t), r.kind)
	inf := submit(t, e, pool, "t.timeout", "host/3", nil)
	waitSnoozed(t, e, inf.ID)
	_, err := pool.Exec(ctx, `UPDATE tasks SET waiting_since = now() - interval '61 minutes' WHERE id = $1`, inf.ID)
	require.NoError(t, err)
	n, err := e.Wake(ctx, nil, "host/3")
	require.NoError(t, err)
	require.Equal(t, 1, n)

	done := waitTask(t, e, inf.ID, rackcloud.TaskSucceeded, rackcloud.TaskFailed)
	require.Equal(t, rackcloud.TaskFailed, done.State)
	require.Equal(t, "await", done.FailedStep)
	require.Equal(t, "step await failed (permanent): "+tasks.ErrWaitTimeout.Error()+": waited 1h0m0s for agent report", done.Error)
	require.EqualValues(t, 1, r.runs.Load(), "the step is not run again after its timeout")
	require.Equal(t, []string{"run before", "run await", "undo await", "undo before"}, r.j.get())
	require.Nil(t, done.WaitingSince)
	require.Equal(t, "failed", done.Steps[1].State)
	require.Equal(t, 1, done.Steps[1].Attempts)
}

// A snooze longer than what is left of the wait timeout ends at the
// timeout, without a wake.
func TestWaitTimeoutCutsALongSnooze(t *testing.T) {
	t.Parallel()
	r := newWaitRig(t, "t.short", 200*time.Millisecond)
	pool := r.pool
	e := startEngine(t, pool, testConfig(t), r.kind)
	inf := submit(t, e, pool, "t.short", "host/4", nil)
	done := waitTask(t, e, inf.ID, rackcloud.TaskSucceeded, rackcloud.TaskFailed)
	require.Equal(t, rackcloud.TaskFailed, done.State)
	require.Contains(t, done.Error, tasks.ErrWaitTimeout.Error()+": waited 200ms for agent report")
	require.Equal(t, []string{"run before", "run await", "undo await", "undo before"}, r.j.get())
}

// Wake leaves alone a task in a retry's backoff and one whose step runs.
func TestWakeLeavesRetriesAndRunningStepsAlone(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	ctx := context.Background()
	var j journal
	var tries atomic.Int64
	started := make(chan string, 1)
	cfg := testConfig(t)
	cfg.RetryBase, cfg.RetryMax = longSnooze, longSnooze
	flaky := tasks.Kind{Name: "t.backoff", Steps: []tasks.Step{{Name: "flaky", Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
		tries.Add(1)
		return nil, errors.New("not yet")
	}}}}
	e := startEngine(t, pool, cfg, flaky, blockingKind("t.busy", &j, started))

	retry := submit(t, e, pool, "t.backoff", "host/5", nil)
	var before *tasks.Info
	waitFor(t, "a retry in backoff", func() bool {
		var err error
		before, err = e.Get(ctx, retry.ID)
		require.NoError(t, err)
		// Get reads the task and its steps apart: wait for both.
		return len(before.Steps) == 1 && before.Steps[0].State == "retrying" && before.RunAt.After(time.Now().Add(longSnooze/2))
	})
	n, err := e.Wake(ctx, nil, "host/5")
	require.NoError(t, err)
	require.Zero(t, n)
	after, err := e.Get(ctx, retry.ID)
	require.NoError(t, err)
	require.Equal(t, before.RunAt, after.RunAt, "the backoff is kept")
	require.Equal(t, before.Attempt, after.Attempt)
	require.EqualValues(t, 1, tries.Load())

	busy := submit(t, e, pool, "t.busy", "host/6", nil)
	require.Equal(t, busy.ID, <-started)
	n, err = e.Wake(ctx, nil, "host/6")
	require.NoError(t, err)
	require.Zero(t, n)
	got, err := e.Get(ctx, busy.ID)
	require.NoError(t, err)
	require.Equal(t, rackcloud.TaskRunning, got.State)
	require.Nil(t, got.WaitingSince)
	require.Equal(t, []string{"run first", "run wait"}, j.get(), "the running step is not interrupted")

	for _, id := range []string{retry.ID, busy.ID} {
		require.NoError(t, e.Cancel(ctx, nil, id))
		waitTask(t, e, id, rackcloud.TaskCanceled)
	}
}

// An event that arrives while the step runs (after it looked, before it
// snoozed) is not lost: the snooze that follows is cut short.
func TestWakeWhileTheStepRunsIsNotLost(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	ctx := context.Background()
	flags(t, pool)
	looked := make(chan struct{})
	proceed := make(chan struct{})
	var runs atomic.Int64
	k := tasks.Kind{Name: "t.race", MaxAttempts: 1, Steps: []tasks.Step{{Name: "await", Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
		n := runs.Add(1)
		ok, err := flagged(ctx, pool, sc.Target)
		if err != nil {
			return nil, err
		}
		if n == 1 {
			close(looked)
			<-proceed
		}
		if !ok {
			return nil, tasks.Snooze(longSnooze, "agent report")
		}
		return nil, nil
	}}}}
	e := startEngine(t, pool, testConfig(t), k)
	inf := submit(t, e, pool, "t.race", "host/7", nil)
	<-looked
	_, err := pool.Exec(ctx, `INSERT INTO wait_flags VALUES ('host/7')`)
	require.NoError(t, err)
	n, err := e.Wake(ctx, nil, "host/7")
	require.NoError(t, err)
	require.Zero(t, n, "the task was running, not snoozing")
	close(proceed)
	done := waitTask(t, e, inf.ID, rackcloud.TaskSucceeded, rackcloud.TaskFailed)
	require.Equal(t, rackcloud.TaskSucceeded, done.State, done.Error)
	require.EqualValues(t, 2, runs.Load())
}

// Wake reaches the snoozing sub-tasks of the task on the target.
func TestWakeReachesSnoozingSubTasks(t *testing.T) {
	t.Parallel()
	r := newWaitRig(t, "t.child", 0)
	pool := r.pool
	ctx := context.Background()
	// The child has no target of its own; it looks for its parent's.
	parent := tasks.Kind{Name: "t.parent", Steps: []tasks.Step{{Name: "spawn", Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
		return sc.SpawnChild(ctx, tasks.ChildSpec{Kind: "t.child", Params: map[string]string{"flag": sc.Target}})
	}}}}
	e := startEngine(t, pool, testConfig(t), parent, r.kind)
	inf := submit(t, e, pool, "t.parent", "host/8", nil)
	var kid tasks.Info
	waitFor(t, "the child to snooze", func() bool {
		kids, err := e.List(ctx, tasks.ListOptions{ParentID: inf.ID})
		require.NoError(t, err)
		if len(kids) == 1 {
			kid = kids[0]
		}
		return len(kids) == 1 && kids[0].WaitingSince != nil && kids[0].RunAt.After(time.Now().Add(longSnooze/2))
	})
	_, err := pool.Exec(ctx, `INSERT INTO wait_flags VALUES ('host/8')`)
	require.NoError(t, err)
	n, err := e.Wake(ctx, nil, "host/8")
	require.NoError(t, err)
	require.Equal(t, 1, n, "the parked parent is left alone, its snoozing child woken")
	require.Equal(t, rackcloud.TaskSucceeded, waitTask(t, e, inf.ID, rackcloud.TaskSucceeded, rackcloud.TaskFailed).State)
	require.Equal(t, rackcloud.TaskSucceeded, waitTask(t, e, kid.ID, rackcloud.TaskSucceeded).State)
	require.EqualValues(t, 2, r.runs.Load())
}

// A snoozed task holds no worker: it stays snoozed while no engine runs,
// and another engine resumes it when an API-only replica wakes it.
func TestSnoozedTaskSurvivesARestart(t *testing.T) {
	t.Parallel()
	r := newWaitRig(t, "t.restart", 0)
	pool := r.pool
	ctx := context.Background()
	kind := r.kind
	a, err := tasks.New(pool, testConfig(t))
	require.NoError(t, err)
	require.NoError(t, a.Register(kind))
	require.NoError(t, a.Start(ctx))
	inf := submit(t, a, pool, "t.restart", "host/9", nil)
	snoozed := waitSnoozed(t, a, inf.ID)
	var leased bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT lease_token IS NOT NULL FROM tasks WHERE id = $1`, inf.ID).Scan(&leased))
	require.False(t, leased, "a snoozed task holds no lease: a kill -9 now would leave nothing to recover")
	require.NoError(t, a.Stop(ctx))

	apiCfg := testConfig(t)
	apiCfg.Workers = -1
	api := startEngine(t, pool, apiCfg, kind)
	got, err := api.Get(ctx, inf.ID)
	require.NoError(t, err)
	require.Equal(t, "agent report", got.WaitingFor)
	require.Equal(t, snoozed.WaitingSince, got.WaitingSince)

	// The second engine records when the wait began, as the first saw it.
	var since atomic.Pointer[time.Time]
	kind.Steps[1].Run = func(ctx context.Context, sc *tasks.StepContext) (any, error) {
		s, ok := sc.WaitingSince()
		if ok {
			since.Store(&s)
		}
		return nil, nil
	}
	b := startEngine(t, pool, testConfig(t), kind)
	n, err := api.Wake(ctx, nil, "host/9")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	done := waitTask(t, b, inf.ID, rackcloud.TaskSucceeded, rackcloud.TaskFailed)
	require.Equal(t, rackcloud.TaskSucceeded, done.State, done.Error)
	require.NotNil(t, since.Load())
	require.True(t, snoozed.WaitingSince.Equal(*since.Load()))
	require.EqualValues(t, 1, r.runs.Load(), "the first engine ran it once")
}

// A task canceled while its step snoozes compensates at once, that step
// included: it started, though its attempt was given back.
func TestCancelSnoozedTaskCompensatesTheWaitingStep(t *testing.T) {
	t.Parallel()
	r := newWaitRig(t, "t.cancelwait", 0)
	pool := r.pool
	ctx := context.Background()
	e := startEngine(t, pool, testConfig(t), r.kind)
	inf := submit(t, e, pool, "t.cancelwait", "host/10", nil)
	waitSnoozed(t, e, inf.ID)
	require.NoError(t, e.Cancel(ctx, nil, inf.ID))
	done := waitTask(t, e, inf.ID, rackcloud.TaskCanceled, rackcloud.TaskFailed, rackcloud.TaskSucceeded)
	require.Equal(t, rackcloud.TaskCanceled, done.State, done.Error)
	require.Equal(t, []string{"run before", "run await", "undo await", "undo before"}, r.j.get())
	require.Nil(t, done.WaitingSince)
}

// A worker that dies while the step runs again after a snooze uses up an
// attempt, as any crash does; the wait goes on from its first snooze.
func TestWorkerLostAfterASnoozeKeepsTheWait(t *testing.T) {
	t.Parallel()
	r := newWaitRig(t, "t.ghost", 0)
	ctx := context.Background()
	r.kind.MaxAttempts = 2
	cfg := testConfig(t)
	cfg.Workers = -1
	api := startEngine(t, r.pool, cfg, r.kind)
	a := startEngine(t, r.pool, testConfig(t), r.kind)
	inf := submit(t, api, r.pool, "t.ghost", "host/11", nil)
	snoozed := waitSnoozed(t, api, inf.ID)
	require.NoError(t, a.Stop(ctx))

	// Woken, claimed, and its worker died: the lease has expired.
	_, err := r.pool.Exec(ctx, `INSERT INTO wait_flags VALUES ('host/11')`)
	require.NoError(t, err)
	ghostClaim(t, r.pool, inf.ID, 1, 0)
	_, err = r.pool.Exec(ctx, `UPDATE tasks SET run_at = now() WHERE id = $1`, inf.ID)
	require.NoError(t, err)
	got, err := api.Get(ctx, inf.ID)
	require.NoError(t, err)
	require.Equal(t, snoozed.WaitingSince, got.WaitingSince)

	b := startEngine(t, r.pool, testConfig(t), r.kind)
	done := waitTask(t, b, inf.ID, rackcloud.TaskSucceeded, rackcloud.TaskFailed)
	require.Equal(t, rackcloud.TaskSucceeded, done.State, done.Error)
	require.Equal(t, 2, done.Steps[1].Attempts, "the lost attempt counts, the snooze did not")
	require.EqualValues(t, 2, r.runs.Load())
}
