package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/tasks"
)

// treeKinds builds a three-level tree: tree.root spawns two tree.mid, each
// of which spawns one tree.leaf; the next step of each level sums its
// children's results. leaf decides what a leaf does.
func treeKinds(j *journal, leaf tasks.StepFunc) []tasks.Kind {
	type val struct {
		V int `json:"v"`
	}
	sum := func(ctx context.Context, sc *tasks.StepContext) (any, error) {
		kids, err := sc.Children(ctx)
		if err != nil {
			return nil, err
		}
		total := 0
		for _, k := range kids {
			if k.State != rackcloud.TaskSucceeded || k.SpawnedBy != "spawn" {
				return nil, fmt.Errorf("child %s is %s, spawned by %q", k.ID, k.State, k.SpawnedBy)
			}
			var v val
			if err := json.Unmarshal(k.Result, &v); err != nil {
				return nil, err
			}
			total += v.V
		}
		return val{V: total}, nil
	}
	undo := func(level string) tasks.StepFunc {
		return func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			j.add("undo " + level)
			return nil, nil
		}
	}
	return []tasks.Kind{
		{Name: "tree.root", Steps: []tasks.Step{
			{Name: "spawn", Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
				for i := range 2 {
					if _, err := sc.SpawnChild(ctx, tasks.ChildSpec{Kind: "tree.mid", Params: map[string]int{"v": i + 1}}); err != nil {
						return nil, err
					}
				}
				j.add("spawned root")
				return nil, nil
			}, Undo: undo("root")},
			{Name: "sum", Run: sum},
		}},
		{Name: "tree.mid", Steps: []tasks.Step{
			{Name: "spawn", Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
				var p val
				if err := sc.Params(&p); err != nil {
					return nil, err
				}
				_, err := sc.SpawnChild(ctx, tasks.ChildSpec{Key: "leaf", Kind: "tree.leaf", Params: map[string]int{"v": p.V * 10}})
				return nil, err
			}, Undo: undo("mid")},
			{Name: "sum", Run: sum},
		}},
		{Name: "tree.leaf", Steps: []tasks.Step{
			{Name: "work", Run: leaf, Undo: undo("leaf")},
		}},
	}
}

func TestSubTaskTreeThreeLevels(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	ctx := context.Background()
	var j journal
	kinds := treeKinds(&j, func(ctx context.Context, sc *tasks.StepContext) (any, error) {
		var p struct {
			V int `json:"v"`
		}
		if err := sc.Params(&p); err != nil {
			return nil, err
		}
		return map[string]int{"v": p.V + 1}, nil
	})
	// A single worker slot: parents waiting for children must not hold it.
	cfg := testConfig(t)
	cfg.Workers = 1
	e := startEngine(t, pool, cfg, kinds...)
	root := submit(t, e, pool, "tree.root", "tree/1", nil)
	done := waitTask(t, e, root.ID, rackcloud.TaskSucceeded, rackcloud.TaskFailed)
	require.Equal(t, rackcloud.TaskSucceeded, done.State, done.Error)
	// (10+1) + (20+1)
	require.JSONEq(t, `{"v":32}`, string(done.Steps[1].Output))

	all, err := e.List(ctx, tasks.ListOptions{RootID: root.ID})
	require.NoError(t, err)
	require.Len(t, all, 5)
	depths := map[int]int{}
	for _, inf := range all {
		require.Equal(t, rackcloud.TaskSucceeded, inf.State)
		require.Equal(t, root.ID, inf.RootID)
		depths[inf.Depth]++
	}
	require.Equal(t, map[int]int{0: 1, 1: 2, 2: 2}, depths)
	mids, err := e.List(ctx, tasks.ListOptions{ParentID: root.ID})
	require.NoError(t, err)
	require.Len(t, mids, 2)
	require.Empty(t, j.get()[1:], "no compensation ran")
}

func TestCancelParentCancelsTreeAndCompensates(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	ctx := context.Background()
	var j journal
	var mu sync.Mutex
	leaves := map[string]bool{}
	kinds := treeKinds(&j, func(ctx context.Context, sc *tasks.StepContext) (any, error) {
		mu.Lock()
		leaves[sc.TaskID] = true
		mu.Unlock()
		<-ctx.Done()
		j.add("leaf stopped: " + context.Cause(ctx).Error())
		return nil, ctx.Err()
	})
	e := startEngine(t, pool, testConfig(t), kinds...)
	root := submit(t, e, pool, "tree.root", "tree/2", nil)
	waitFor(t, "both leaves running", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(leaves) == 2
	})
	require.NoError(t, e.Cancel(ctx, nil, root.ID))
	done := waitTask(t, e, root.ID, rackcloud.TaskCanceled, rackcloud.TaskFailed, rackcloud.TaskSucceeded)
	require.Equal(t, rackcloud.TaskCanceled, done.State, done.Error)
	all, err := e.List(ctx, tasks.ListOptions{RootID: root.ID})
	require.NoError(t, err)
	require.Len(t, all, 5)
	for _, inf := range all {
		require.Equal(t, rackcloud.TaskCanceled, inf.State, "%s (%s): %s", inf.ID, inf.Kind, inf.Error)
	}
	// Every level compensated, each parent after its children.
	count := map[string]int{}
	pos := map[string]int{}
	for i, l := range j.get() {
		count[l]++
		pos[l] = i
	}
	require.Equal(t, 2, count["leaf stopped: task canceled"])
	require.Equal(t, 2, count["undo leaf"])
	require.Equal(t, 2, count["undo mid"])
	require.Equal(t, 1, count["undo root"])
	require.Less(t, pos["undo leaf"], pos["undo root"])
	require.Less(t, pos["undo mid"], pos["undo root"])
}

func TestFailingGrandchildFailsTheTree(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	ctx := context.Background()
	var j journal
	kinds := treeKinds(&j, func(ctx context.Context, sc *tasks.StepContext) (any, error) {
		var p struct {
			V int `json:"v"`
		}
		if err := sc.Params(&p); err != nil {
			return nil, err
		}
		if p.V == 20 {
			return nil, tasks.Permanent(errors.New("disk full on /var/lib/libvirt"))
		}
		return map[string]int{"v": p.V}, nil
	})
	e := startEngine(t, pool, testConfig(t), kinds...)
	root := submit(t, e, pool, "tree.root", "tree/3", nil)
	done := waitTask(t, e, root.ID, rackcloud.TaskFailed, rackcloud.TaskCanceled, rackcloud.TaskSucceeded)
	require.Equal(t, rackcloud.TaskFailed, done.State)
	require.Equal(t, "spawn", done.FailedStep)
	require.Contains(t, done.Error, "disk full on /var/lib/libvirt", "the grandchild's error reaches the root")
	require.Contains(t, done.Error, "(tree.mid) failed")
	require.Contains(t, done.Error, "(tree.leaf) failed")

	all, err := e.List(ctx, tasks.ListOptions{RootID: root.ID})
	require.NoError(t, err)
	states := map[string]int{}
	for _, inf := range all {
		states[inf.Kind+" "+string(inf.State)]++
	}
	require.Equal(t, map[string]int{
		"tree.root failed": 1, "tree.mid failed": 1, "tree.mid succeeded": 1,
		"tree.leaf failed": 1, "tree.leaf succeeded": 1,
	}, states)
	count := map[string]int{}
	for _, l := range j.get() {
		count[l]++
	}
	// The failed leaf and mid compensate, and so does the root.
	require.Equal(t, 1, count["undo leaf"])
	require.Equal(t, 1, count["undo mid"])
	require.Equal(t, 1, count["undo root"])
}

func TestFollowReplaysAndStreams(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	ctx := context.Background()
	gate := make(chan struct{})
	k := tasks.Kind{Name: "t.follow", Steps: []tasks.Step{noop("a"), {Name: "gate", Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
		select {
		case <-gate:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}}, noop("c")}}
	e := startEngine(t, pool, testConfig(t), k)
	// A follower in another engine (an API replica) sees the same stream.
	cfg := testConfig(t)
	cfg.Workers = -1
	api := startEngine(t, pool, cfg, k)
	inf := submit(t, e, pool, "t.follow", "", nil)

	var got []tasks.Event
	var mu sync.Mutex
	errc := make(chan error, 1)
	go func() {
		errc <- api.Follow(ctx, inf.ID, 0, func(ev tasks.Event) error {
			mu.Lock()
			got = append(got, ev)
			mu.Unlock()
			return nil
		})
	}()
	waitFor(t, "the gate step to start", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 3 // created, started, step_succeeded(a)
	})
	close(gate)
	require.NoError(t, <-errc)
	var types []string
	for i, ev := range got {
		require.Equal(t, int64(i+1), ev.Seq)
		types = append(types, ev.Type)
	}
	require.Equal(t, []string{"created", "started", "step_succeeded", "step_succeeded", "step_succeeded", "succeeded"}, types)

	// Replay from a sequence number; on an ended task Follow returns.
	var tail []int64
	require.NoError(t, api.Follow(ctx, inf.ID, 4, func(ev tasks.Event) error {
		tail = append(tail, ev.Seq)
		return nil
	}))
	require.Equal(t, []int64{5, 6}, tail)
	require.NoError(t, api.Follow(ctx, inf.ID, 6, func(ev tasks.Event) error {
		return fmt.Errorf("unexpected event %d", ev.Seq)
	}))
	stop := errors.New("enough")
	require.ErrorIs(t, api.Follow(ctx, inf.ID, 0, func(tasks.Event) error { return stop }), stop)
	require.ErrorIs(t, api.Follow(ctx, "0b5c4a0e-7c1e-4f6e-9a53-4a3f3f1f0000", 0, nil), rackcloud.ErrNotFound)
}

// Prune deletes ended trees older than the cut-off with everything that
// hangs off them, and keeps recent trees and trees with an active task.
func TestPruneEndedTrees(t *testing.T) {
	t.Parallel()
	pool := pgtest.DB(t)
	ctx := context.Background()
	var j journal
	kinds := treeKinds(&j, func(ctx context.Context, sc *tasks.StepContext) (any, error) {
		return map[string]int{"v": 1}, nil
	})
	e := startEngine(t, pool, testConfig(t), kinds...)
	var roots []string
	for i := range 3 {
		r := submit(t, e, pool, "tree.root", fmt.Sprintf("tree/%d", i), nil)
		require.Equal(t, rackcloud.TaskSucceeded, waitTask(t, e, r.ID, rackcloud.TaskSucceeded, rackcloud.TaskFailed).State)
		roots = append(roots, r.ID)
	}
	// No worker may pick up the leaf made "running" below: prune from an
	// engine that only submits and queries.
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	require.NoError(t, e.Stop(sctx))
	cfg := testConfig(t)
	cfg.Workers = -1
	e = startEngine(t, pool, cfg, kinds...)
	// roots[0] and roots[1] ended long ago; roots[1] has a leaf still
	// running (left behind by a bug or a manual edit), roots[2] is recent.
	_, err := pool.Exec(ctx, `UPDATE tasks SET finished_at = now() - interval '40 days' WHERE id = ANY($1::uuid[])`, roots[:2])
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE tasks SET state = 'running', finished_at = NULL
		WHERE id = (SELECT id FROM tasks WHERE root_id = $1 AND depth = 2 LIMIT 1)`, roots[1])
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO task_owners (task_id, actor) VALUES ($1, 'user:admin')`, roots[0])
	require.NoError(t, err)

	n, err := e.Prune(ctx, time.Now().Add(-30*24*time.Hour))
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	count := func(sql string, args ...any) int {
		var c int
		require.NoError(t, pool.QueryRow(ctx, sql, args...).Scan(&c))
		return c
	}
	require.Zero(t, count(`SELECT count(*) FROM tasks WHERE root_id = $1`, roots[0]))
	require.Zero(t, count(`SELECT count(*) FROM task_steps s WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = s.task_id)`))
	require.Zero(t, count(`SELECT count(*) FROM task_events ev WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = ev.task_id)`))
	require.Zero(t, count(`SELECT count(*) FROM task_owners`))
	require.Equal(t, 5, count(`SELECT count(*) FROM tasks WHERE root_id = $1`, roots[1]))
	require.Equal(t, 5, count(`SELECT count(*) FROM tasks WHERE root_id = $1`, roots[2]))
	require.Positive(t, count(`SELECT count(*) FROM task_events WHERE task_id = $1`, roots[2]))
	_, err = e.Get(ctx, roots[0])
	require.ErrorIs(t, err, rackcloud.ErrNotFound)

	// Nothing left to prune: a second pass deletes nothing.
	n, err = e.Prune(ctx, time.Now().Add(-30*24*time.Hour))
	require.NoError(t, err)
	require.Zero(t, n)
}
