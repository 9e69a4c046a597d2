package tasks_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
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
