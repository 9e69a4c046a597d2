package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/tasks"
)

func TestStepsRunInOrderWithOutputs(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	type out struct {
		N int `json:"n"`
	}
	kind := tasks.Kind{Name: "t.three", Steps: []tasks.Step{
		{Name: "a", Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			var p struct {
				Start int `json:"start"`
			}
			if err := sc.Params(&p); err != nil {
				return nil, err
			}
			return out{N: p.Start + 1}, nil
		}},
		{Name: "b", Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			var a out
			if err := sc.Output("a", &a); err != nil {
				return nil, err
			}
			return out{N: a.N * 10}, nil
		}},
		{Name: "c", Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			var b out
			if err := sc.Output("b", &b); err != nil {
				return nil, err
			}
			return map[string]any{"n": b.N + 1, "key": sc.IdempotencyKey()}, nil
		}},
	}}
	e := startEngine(t, pool, testConfig(t), kind)
	inf := submit(t, e, pool, "t.three", "thing/1", map[string]int{"start": 4})
	require.Equal(t, rackcloud.TaskPending, inf.State)
	require.Equal(t, "a", inf.StepName)

	done := waitTask(t, e, inf.ID, rackcloud.TaskSucceeded, rackcloud.TaskFailed)
	require.Equal(t, rackcloud.TaskSucceeded, done.State, done.Error)
	require.Len(t, done.Steps, 3)
	var names []string
	for _, s := range done.Steps {
		names = append(names, s.Name)
		require.Equal(t, "succeeded", s.State)
		require.Equal(t, 1, s.Attempts)
	}
	require.Equal(t, []string{"a", "b", "c"}, names)
	require.JSONEq(t, `{"n":5}`, string(done.Steps[0].Output))
	require.JSONEq(t, `{"n":50}`, string(done.Steps[1].Output))
	var c map[string]any
	require.NoError(t, json.Unmarshal(done.Steps[2].Output, &c))
	require.Equal(t, float64(51), c["n"])
	require.Equal(t, "task/"+inf.ID+"/run/2/c", c["key"])

	evs, err := e.Events(context.Background(), inf.ID, 0, 0)
	require.NoError(t, err)
	var got []string
	for i, ev := range evs {
		require.Equal(t, int64(i+1), ev.Seq)
		got = append(got, ev.Type+":"+string(ev.State))
	}
	want := []string{"created:pending", "started:running", "step_succeeded:running", "step_succeeded:running",
		"step_succeeded:running", "succeeded:succeeded"}
	require.Empty(t, cmp.Diff(want, got))
}

// journal records what steps and compensations ran, in order.
type journal struct {
	mu    sync.Mutex
	lines []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	j.lines = append(j.lines, s)
	j.mu.Unlock()
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.lines)
}

// sagaKind has steps a, b, c with compensations for a and b; fail(step,
// attempt) returns the error step returns on that attempt.
func sagaKind(name string, j *journal, fail func(step string, attempt int) error) tasks.Kind {
	step := func(n string, undo bool) tasks.Step {
		s := tasks.Step{Name: n, Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			j.add("run " + n)
			if err := fail(n, sc.Attempt); err != nil {
				return nil, err
			}
			return n, nil
		}}
		if undo {
			s.Undo = func(ctx context.Context, sc *tasks.StepContext) (any, error) {
				if sc.Phase != tasks.PhaseUndo {
					j.add("undo in phase " + string(sc.Phase))
				}
				j.add("undo " + n)
				return nil, nil
			}
		}
		return s
	}
	return tasks.Kind{Name: name, Steps: []tasks.Step{step("a", true), step("b", true), step("c", false)}}
}

func TestRetryThenSucceed(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	var j journal
	cfg := testConfig(t)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	e := startEngine(t, pool, cfg, sagaKind("t.flaky", &j, func(step string, attempt int) error {
		if step == "b" && attempt < 3 {
			return fmt.Errorf("flaky %d", attempt)
		}
		return nil
	}))
	inf := submit(t, e, pool, "t.flaky", "", nil)
	done := waitTask(t, e, inf.ID, rackcloud.TaskSucceeded, rackcloud.TaskFailed)
	require.Equal(t, rackcloud.TaskSucceeded, done.State, done.Error)
	require.Equal(t, []string{"run a", "run b", "run b", "run b", "run c"}, j.get())
	b := done.Steps[1]
	require.Equal(t, "b", b.Name)
	require.Equal(t, 3, b.Attempts)
	require.Len(t, b.Errors, 2)
	require.Equal(t, "flaky 1", b.Errors[0].Error)
	require.Equal(t, 2, b.Errors[1].Attempt)
	require.Equal(t, 2.0, counterValue(t, reg, "rackcloud_tasks_step_retries_total", "t.flaky", "b"))
}

func TestRetriesExhaustedFailAndCompensate(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	var j journal
	cfg := testConfig(t)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	e := startEngine(t, pool, cfg, sagaKind("t.broken", &j, func(step string, attempt int) error {
		if step == "b" {
			return fmt.Errorf("disk on fire (attempt %d)", attempt)
		}
		return nil
	}))
	inf := submit(t, e, pool, "t.broken", "guest/1", nil)
	done := waitTask(t, e, inf.ID, rackcloud.TaskSucceeded, rackcloud.TaskFailed)
	require.Equal(t, rackcloud.TaskFailed, done.State)
	require.Equal(t, "b", done.FailedStep)
	require.Equal(t, "step b failed after 3 attempt(s): disk on fire (attempt 3)", done.Error)
	// The failed step and the one before are compensated, last first.
	require.Equal(t, []string{"run a", "run b", "run b", "run b", "undo b", "undo a"}, j.get())
	b := done.Steps[1]
	require.Equal(t, "failed", b.State)
	require.Equal(t, 3, b.Attempts)
	require.Len(t, b.Errors, 3)
	require.Equal(t, tasks.PhaseUndo, done.Steps[2].Phase)
	require.Equal(t, "b", done.Steps[2].Name)
	require.Equal(t, "a", done.Steps[3].Name)
	require.Equal(t, 1.0, counterValue(t, reg, "rackcloud_tasks_finished_total", "t.broken", "failed"))
	// The target is free again.
	submit(t, e, pool, "t.broken", "guest/1", nil)
}

func TestPermanentErrorIsNotRetried(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	var j journal
	e := startEngine(t, pool, testConfig(t), sagaKind("t.perm", &j, func(step string, attempt int) error {
		if step == "a" {
			return tasks.Permanent(errors.New("image not found"))
		}
		return nil
	}))
	inf := submit(t, e, pool, "t.perm", "", nil)
	done := waitTask(t, e, inf.ID, rackcloud.TaskSucceeded, rackcloud.TaskFailed)
	require.Equal(t, rackcloud.TaskFailed, done.State)
	require.Equal(t, "step a failed (permanent): image not found", done.Error)
	require.Equal(t, []string{"run a", "undo a"}, j.get())
}

func TestStepPanicIsAnError(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	k := tasks.Kind{Name: "t.panic", MaxAttempts: 1, Steps: []tasks.Step{{Name: "boom", Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
		panic("nil map")
	}}}}
	e := startEngine(t, pool, testConfig(t), k)
	inf := submit(t, e, pool, "t.panic", "", nil)
	done := waitTask(t, e, inf.ID, rackcloud.TaskFailed)
	require.Contains(t, done.Error, "step boom panicked: nil map")
}

// blockingKind's step "wait" blocks until its context ends.
func blockingKind(name string, j *journal, started chan<- string) tasks.Kind {
	return tasks.Kind{Name: name, Steps: []tasks.Step{
		{Name: "first", Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			j.add("run first")
			return nil, nil
		}, Undo: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			j.add("undo first")
			return nil, nil
		}},
		{Name: "wait", Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			j.add("run wait")
			select {
			case started <- sc.TaskID:
			default:
			}
			<-ctx.Done()
			j.add("wait ended: " + context.Cause(ctx).Error())
			return nil, ctx.Err()
		}, Undo: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			j.add("undo wait")
			return nil, nil
		}},
		noop("never"),
	}}
}

func TestCancelRunningTaskCompensates(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	var j journal
	started := make(chan string, 1)
	e := startEngine(t, pool, testConfig(t), blockingKind("t.block", &j, started))
	inf := submit(t, e, pool, "t.block", "guest/2", nil)
	require.Equal(t, inf.ID, <-started)
	require.NoError(t, e.Cancel(context.Background(), nil, inf.ID))
	done := waitTask(t, e, inf.ID, rackcloud.TaskCanceled, rackcloud.TaskFailed, rackcloud.TaskSucceeded)
	require.Equal(t, rackcloud.TaskCanceled, done.State, done.Error)
	require.Equal(t, []string{"run first", "run wait", "wait ended: task canceled", "undo wait", "undo first"}, j.get())
	// Cancel of an ended task is a conflict; unknown and malformed IDs are
	// not found and invalid.
	require.ErrorIs(t, e.Cancel(context.Background(), nil, inf.ID), rackcloud.ErrConflict)
	require.ErrorIs(t, e.Cancel(context.Background(), nil, "0b5c4a0e-7c1e-4f6e-9a53-4a3f3f1f0000"), rackcloud.ErrNotFound)
	require.ErrorIs(t, e.Cancel(context.Background(), nil, "nope"), rackcloud.ErrInvalid)
	_, err := e.Get(context.Background(), "0b5c4a0e-7c1e-4f6e-9a53-4a3f3f1f0000")
	require.ErrorIs(t, err, rackcloud.ErrNotFound)
}

func TestCancelPendingTaskRunsNothing(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	var j journal
	started := make(chan string, 1)
	kind := blockingKind("t.block", &j, started)
	// An engine without workers only submits.
	cfg := testConfig(t)
	cfg.Workers = -1
	api := startEngine(t, pool, cfg, kind)
	inf := submit(t, api, pool, "t.block", "guest/3", nil)
	require.NoError(t, api.Cancel(context.Background(), nil, inf.ID))
	got, err := api.Get(context.Background(), inf.ID)
	require.NoError(t, err)
	require.Equal(t, rackcloud.TaskCanceling, got.State)
	require.True(t, got.CancelRequested)
	// Idempotent while canceling.
	require.NoError(t, api.Cancel(context.Background(), nil, inf.ID))

	worker := startEngine(t, pool, testConfig(t), kind)
	done := waitTask(t, worker, inf.ID, rackcloud.TaskCanceled, rackcloud.TaskFailed, rackcloud.TaskSucceeded)
	require.Equal(t, rackcloud.TaskCanceled, done.State, done.Error)
	require.Empty(t, j.get())
	require.Empty(t, done.Steps)
}

// A cancel written in the caller's transaction takes effect with that
// transaction only: rolled back, the task never hears of it.
func TestCancelInCallersTransaction(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	ctx := context.Background()
	var j journal
	cfg := testConfig(t)
	cfg.Workers = -1
	e := startEngine(t, pool, cfg, blockingKind("t.block", &j, make(chan string, 1)))
	inf := submit(t, e, pool, "t.block", "guest/4", nil)

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, e.Cancel(ctx, tx, inf.ID))
	require.NoError(t, tx.Rollback(ctx))
	got, err := e.Get(ctx, inf.ID)
	require.NoError(t, err)
	require.Equal(t, rackcloud.TaskPending, got.State)
	require.False(t, got.CancelRequested)

	tx, err = pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, e.Cancel(ctx, tx, inf.ID))
	require.NoError(t, tx.Commit(ctx))
	got, err = e.Get(ctx, inf.ID)
	require.NoError(t, err)
	require.Equal(t, rackcloud.TaskCanceling, got.State)
	require.True(t, got.CancelRequested)
}

func TestOneActiveTaskPerTarget(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	ctx := context.Background()
	var j journal
	started := make(chan string, 1)
	e := startEngine(t, pool, testConfig(t), blockingKind("t.block", &j, started))
	first := submit(t, e, pool, "t.block", "host/7", nil)

	// A second task on the same target conflicts, inside the caller's
	// transaction, which stays usable.
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	_, err = e.Submit(ctx, tx, tasks.Submission{Kind: "t.block", Target: "host/7"})
	require.ErrorIs(t, err, rackcloud.ErrConflict)
	require.ErrorContains(t, err, first.ID)
	other, err := e.Submit(ctx, tx, tasks.Submission{Kind: "t.block", Target: "host/8"})
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	// Rolled back with the caller's transaction: it never existed.
	_, err = e.Get(ctx, other.ID)
	require.ErrorIs(t, err, rackcloud.ErrNotFound)

	// Concurrent submissions: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for range 8 {
		wg.Go(func() {
			_, err := e.Submit(ctx, pool, tasks.Submission{Kind: "t.block", Target: "host/9"})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
			} else if errors.Is(err, rackcloud.ErrConflict) {
				conflicts++
			} else {
				t.Errorf("submit: %v", err)
			}
		})
	}
	wg.Wait()
	require.Equal(t, 1, wins)
	require.Equal(t, 7, conflicts)

	// Once the first ended, the target is free.
	<-started
	require.NoError(t, e.Cancel(ctx, nil, first.ID))
	waitTask(t, e, first.ID, rackcloud.TaskCanceled)
	again, err := e.Submit(ctx, pool, tasks.Submission{Kind: "t.block", Target: "host/7"})
	require.NoError(t, err)
	// Leave nothing blocked behind.
	active, err := e.List(ctx, tasks.ListOptions{Kind: "t.block"})
	require.NoError(t, err)
	for _, a := range active {
		if !a.State.Terminal() {
			require.NoError(t, e.Cancel(ctx, nil, a.ID))
			waitTask(t, e, a.ID, rackcloud.TaskCanceled)
		}
	}
	require.Equal(t, rackcloud.TaskCanceled, waitTask(t, e, again.ID, rackcloud.TaskCanceled).State)
}

func TestStopGivesTasksBackWithoutUsingAnAttempt(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	ctx := context.Background()
	var j journal
	started := make(chan string, 1)
	a, err := tasks.New(pool, testConfig(t))
	require.NoError(t, err)
	require.NoError(t, a.Register(blockingKind("t.stop", &j, started)))
	require.NoError(t, a.Start(ctx))
	inf := submit(t, a, pool, "t.stop", "", nil)
	<-started
	stopCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	require.NoError(t, a.Stop(stopCtx))
	require.NoError(t, a.Stop(ctx), "Stop twice")
	got, err := a.Get(ctx, inf.ID)
	require.NoError(t, err)
	require.Equal(t, rackcloud.TaskRunning, got.State)
	require.Equal(t, "wait", got.StepName)
	require.Equal(t, 0, got.Attempt, "the interrupted attempt is given back")

	// Another engine, whose "wait" step returns at once, finishes it.
	k := blockingKind("t.stop", &j, started)
	k.Steps[1].Run = func(ctx context.Context, sc *tasks.StepContext) (any, error) {
		return sc.Attempt, nil
	}
	b := startEngine(t, pool, testConfig(t), k)
	done := waitTask(t, b, inf.ID, rackcloud.TaskSucceeded, rackcloud.TaskFailed)
	require.Equal(t, rackcloud.TaskSucceeded, done.State, done.Error)
	require.JSONEq(t, "1", string(done.Steps[1].Output))
	require.Equal(t, []string{"run first", "run wait", "wait ended: task engine stopping"}, j.get())
}

func TestSubmitRejectsBadInput(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	ctx := context.Background()
	cfg := testConfig(t)
	cfg.Workers = -1
	k := tasks.Kind{Name: "t.valid", Steps: []tasks.Step{noop("a")}, Validate: func(p json.RawMessage) error {
		var v struct {
			Size int `json:"size"`
		}
		if err := json.Unmarshal(p, &v); err != nil || v.Size <= 0 {
			return errors.New("size must be positive")
		}
		return nil
	}}
	e := startEngine(t, pool, cfg, k)
	for name, s := range map[string]tasks.Submission{
		"unknown kind":     {Kind: "t.nope"},
		"params array":     {Kind: "t.valid", Params: json.RawMessage(`[1,2]`)},
		"params not json":  {Kind: "t.valid", Params: []byte(`{size:`)},
		"params unmarshal": {Kind: "t.valid", Params: make(chan int)},
		"validate":         {Kind: "t.valid", Params: map[string]int{"size": -1}},
		"long target":      {Kind: "t.valid", Params: map[string]int{"size": 1}, Target: strings.Repeat("x", 501)},
	} {
		_, err := e.Submit(ctx, pool, s)
		require.ErrorIs(t, err, rackcloud.ErrInvalid, name)
	}
	list, err := e.List(ctx, tasks.ListOptions{})
	require.NoError(t, err)
	require.Empty(t, list, "nothing was written")
	_, err = e.Submit(ctx, pool, tasks.Submission{Kind: "t.valid", Params: map[string]int{"size": 1}})
	require.NoError(t, err)

	// Registration errors.
	for name, bad := range map[string]tasks.Kind{
		"bad name":  {Name: "Bad Name", Steps: []tasks.Step{noop("a")}},
		"no steps":  {Name: "t.empty"},
		"dup step":  {Name: "t.dup", Steps: []tasks.Step{noop("a"), noop("a")}},
		"nil run":   {Name: "t.nilrun", Steps: []tasks.Step{{Name: "a"}}},
		"neg tries": {Name: "t.neg", MaxAttempts: -1, Steps: []tasks.Step{noop("a")}},
	} {
		e2, err := tasks.New(pool, tasks.Config{})
		require.NoError(t, err)
		require.ErrorIs(t, e2.Register(bad), rackcloud.ErrInvalid, name)
	}
	e3, err := tasks.New(pool, tasks.Config{})
	require.NoError(t, err)
	require.NoError(t, e3.Register(k))
	require.ErrorIs(t, e3.Register(k), rackcloud.ErrConflict)
}

func TestListFilters(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	ctx := context.Background()
	e := startEngine(t, pool, testConfig(t), tasks.Kind{Name: "t.list", Steps: []tasks.Step{noop("a"), noop("b")}})
	var ids []string
	for i := range 5 {
		ids = append(ids, submit(t, e, pool, "t.list", fmt.Sprintf("thing/%d", i), nil).ID)
	}
	for _, id := range ids {
		waitTask(t, e, id, rackcloud.TaskSucceeded)
	}
	all, err := e.List(ctx, tasks.ListOptions{Kind: "t.list", State: rackcloud.TaskSucceeded})
	require.NoError(t, err)
	require.Len(t, all, 5)
	one, err := e.List(ctx, tasks.ListOptions{Target: "thing/3", WithSteps: true})
	require.NoError(t, err)
	require.Len(t, one, 1)
	require.Equal(t, ids[3], one[0].ID)
	require.Len(t, one[0].Steps, 2)
	two, err := e.List(ctx, tasks.ListOptions{Limit: 2})
	require.NoError(t, err)
	require.Len(t, two, 2)
	_, err = e.List(ctx, tasks.ListOptions{ParentID: "x"})
	require.ErrorIs(t, err, rackcloud.ErrInvalid)
}

// counterValue returns a counter's value (0 when absent).
func counterValue(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	return metric(t, g, name, labels...).GetCounter().GetValue()
}

// gaugeValue returns a gauge's value (0 when absent).
func gaugeValue(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	return metric(t, g, name, labels...).GetGauge().GetValue()
}

// metric returns the sample of metric name with label values labels, or
// nil.
func metric(t testing.TB, g prometheus.Gatherer, name string, labels ...string) *dto.Metric {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var vals []string
			for _, lp := range m.GetLabel() {
				vals = append(vals, lp.GetValue())
			}
			if slices.Equal(vals, labels) {
				return m
			}
		}
	}
	return nil
}

func TestMetricsAreExposedAndValid(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	cfg := testConfig(t)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	var j journal
	e := startEngine(t, pool, cfg, sagaKind("t.metrics", &j, func(step string, attempt int) error {
		if step == "c" && attempt == 1 {
			return errors.New("once")
		}
		return nil
	}))
	inf := submit(t, e, pool, "t.metrics", "", nil)
	waitTask(t, e, inf.ID, rackcloud.TaskSucceeded)
	waitFor(t, "metrics", func() bool {
		return counterValue(t, reg, "rackcloud_tasks_finished_total", "t.metrics", "succeeded") == 1
	})
	require.Equal(t, 1.0, counterValue(t, reg, "rackcloud_tasks_started_total", "t.metrics"))
	require.Equal(t, 1.0, counterValue(t, reg, "rackcloud_tasks_submitted_total", "t.metrics"))
	require.Equal(t, 1.0, counterValue(t, reg, "rackcloud_tasks_step_retries_total", "t.metrics", "c"))

	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, name := range []string{
		"rackcloud_tasks_step_duration_seconds_bucket", "rackcloud_tasks_pickup_latency_seconds_bucket",
		"rackcloud_tasks_queue_depth", "rackcloud_tasks_running", "rackcloud_tasks_leases_lost_total",
	} {
		require.Contains(t, body, name)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not installed (lab/install.sh installs prometheus): %v", err)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics:\n%s", out)
}
