package tasks_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/tasks"
)

// ghostClaim makes task id look claimed by a worker that died: attempt
// counts one more, the lease expires after ms milliseconds.
func ghostClaim(t *testing.T, pool *pgxpool.Pool, id string, attempt int, ms int) {
	t.Helper()
	tag, err := pool.Exec(context.Background(), `
		UPDATE tasks SET state = 'running', attempt = $2, claims = claims + 1, lease_owner = 'ghost',
			lease_token = nextval('task_lease_token_seq'), lease_expires_at = now() + $3 * interval '1 millisecond'
		WHERE id = $1`, id, attempt, ms)
	require.NoError(t, err)
	require.EqualValues(t, 1, tag.RowsAffected())
}

func TestDeadWorkersTaskIsPickedUpAfterItsLease(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	var j journal
	kind := sagaKind("t.dead", &j, func(string, int) error { return nil })
	cfg := testConfig(t)
	cfg.Workers = -1
	api := startEngine(t, pool, cfg, kind)
	inf := submit(t, api, pool, "t.dead", "", nil)
	ghostClaim(t, pool, inf.ID, 1, 300)

	e := startEngine(t, pool, testConfig(t), kind)
	done := waitTask(t, e, inf.ID, rackcloud.TaskSucceeded, rackcloud.TaskFailed)
	require.Equal(t, rackcloud.TaskSucceeded, done.State, done.Error)
	require.Equal(t, 2, done.Steps[0].Attempts, "the dead worker's attempt counts")
	require.Equal(t, 2, done.Claims)
	require.Equal(t, []string{"run a", "run b", "run c"}, j.get())
}

func TestWorkerLostAttemptsAreBounded(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	var j journal
	kind := sagaKind("t.crashloop", &j, func(string, int) error { return nil })
	cfg := testConfig(t)
	cfg.Workers = -1
	api := startEngine(t, pool, cfg, kind)
	inf := submit(t, api, pool, "t.crashloop", "", nil)
	// Three workers died in step a (e.g. the step crashes the process).
	ghostClaim(t, pool, inf.ID, 3, 0)

	e := startEngine(t, pool, testConfig(t), kind)
	done := waitTask(t, e, inf.ID, rackcloud.TaskSucceeded, rackcloud.TaskFailed)
	require.Equal(t, rackcloud.TaskFailed, done.State)
	require.Equal(t, "a", done.FailedStep)
	require.Equal(t, "step a failed after 3 attempt(s): attempt 3 did not finish (worker lost)", done.Error)
	require.Equal(t, []string{"undo a"}, j.get(), "step a never ran here, its compensation did")
}

func TestLostLeaseFencesTheOldWorker(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	ctx := context.Background()
	var j journal
	started := make(chan string, 4)
	kind := blockingKind("t.fence", &j, started)
	kind.Steps[1].Run = func(ctx context.Context, sc *tasks.StepContext) (any, error) {
		j.add(fmt.Sprintf("run wait %d", sc.Attempt))
		if sc.Attempt > 1 {
			return "second", nil
		}
		started <- sc.TaskID
		<-ctx.Done()
		j.add("wait ended: " + context.Cause(ctx).Error())
		// Whatever a fenced-off step returns is not recorded.
		return "first", nil
	}
	e := startEngine(t, pool, testConfig(t), kind)
	inf := submit(t, e, pool, "t.fence", "", nil)
	<-started
	// Another worker takes the task over (as if this one had stalled past
	// its lease); it "dies" too, its lease expires soon.
	ghostClaim(t, pool, inf.ID, 2, 500)
	done := waitTask(t, e, inf.ID, rackcloud.TaskSucceeded, rackcloud.TaskFailed)
	require.Equal(t, rackcloud.TaskSucceeded, done.State, done.Error)
	require.JSONEq(t, `"second"`, string(done.Steps[1].Output))
	require.Equal(t, 3, done.Steps[1].Attempts)
	// The old worker learns at its next heartbeat that the lease is gone.
	waitFor(t, "the old worker to be interrupted", func() bool {
		return slices.Contains(j.get(), "wait ended: task lease lost")
	})
	got := j.get()
	slices.Sort(got)
	require.Equal(t, []string{"run first", "run wait 1", "run wait 3", "wait ended: task lease lost"}, got)
	evs, err := e.Events(ctx, inf.ID, 0, 0)
	require.NoError(t, err)
	for _, ev := range evs {
		require.NotEqual(t, tasks.EventStepRetrying, ev.Type, "the fenced worker recorded nothing")
	}
}

func TestTwoEnginesRunEachStepOnce(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	ctx := context.Background()
	_, err := pool.Exec(ctx, `CREATE TABLE runs (key text NOT NULL, worker text NOT NULL)`)
	require.NoError(t, err)
	step := func(name string) tasks.Step {
		return tasks.Step{Name: name, Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			_, err := pool.Exec(ctx, `INSERT INTO runs VALUES ($1, $2)`, sc.IdempotencyKey(), sc.Worker)
			return nil, err
		}}
	}
	kind := tasks.Kind{Name: "t.shared", Steps: []tasks.Step{step("a"), step("b"), step("c")}}
	a := startEngine(t, pool, testConfig(t), kind)
	b := startEngine(t, pool, testConfig(t), kind)
	const n = 100
	var ids []string
	for i := range n {
		e := a
		if i%2 == 1 {
			e = b
		}
		ids = append(ids, submit(t, e, pool, "t.shared", "", nil).ID)
	}
	for _, id := range ids {
		done := waitTask(t, a, id, rackcloud.TaskSucceeded, rackcloud.TaskFailed)
		require.Equal(t, rackcloud.TaskSucceeded, done.State, done.Error)
	}
	var runs, keys, dups int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT key) FROM runs`).Scan(&runs, &keys))
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT key FROM runs GROUP BY key HAVING count(*) > 1) d`).Scan(&dups))
	require.Equal(t, 3*n, keys)
	require.Equal(t, 3*n, runs, "%d steps ran more than once", dups)
	var workers int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(DISTINCT worker) FROM runs`).Scan(&workers))
	t.Logf("steps ran on %d engines", workers)
}
