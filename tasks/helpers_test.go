package tasks_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/tasks"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testConfig is fast: short leases, quick polls and retries.
func testConfig(t testing.TB) tasks.Config {
	return tasks.Config{
		Workers:         4,
		LeaseTTL:        3 * time.Second,
		PollInterval:    50 * time.Millisecond,
		RetryBase:       10 * time.Millisecond,
		RetryMax:        50 * time.Millisecond,
		MetricsInterval: 100 * time.Millisecond,
		Logger:          testLogger(t),
		Registerer:      prometheus.NewRegistry(),
	}
}

// testLogger logs to the test with TASKS_TEST_LOG=1.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("TASKS_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(&tWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

var _ io.Writer = (*tWriter)(nil)

// startEngine registers kinds on a new engine, starts it and stops it at
// the end of the test.
func startEngine(t testing.TB, pool *pgxpool.Pool, cfg tasks.Config, kinds ...tasks.Kind) *tasks.Engine {
	t.Helper()
	e, err := tasks.New(pool, cfg)
	require.NoError(t, err)
	for _, k := range kinds {
		require.NoError(t, e.Register(k))
	}
	require.NoError(t, e.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		require.NoError(t, e.Stop(ctx))
	})
	return e
}

// waitTask polls until the task is in one of states, or fails the test
// after a generous deadline.
func waitTask(t testing.TB, e *tasks.Engine, id string, states ...rackcloud.TaskState) *tasks.Info {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var last *tasks.Info
	for {
		inf, err := e.Get(ctx, id)
		if err == nil {
			last = inf
			for _, s := range states {
				if inf.State == s {
					return inf
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("task %s did not reach %v: last %+v (err %v)", id, states, last, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitFor polls cond until it holds or fails the test after a deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func submit(t testing.TB, e *tasks.Engine, pool *pgxpool.Pool, kind, target string, params any) *tasks.Info {
	t.Helper()
	inf, err := e.Submit(context.Background(), pool, tasks.Submission{Kind: kind, Target: target, Params: params})
	require.NoError(t, err)
	return inf
}

// noop is a step that returns its name.
func noop(name string) tasks.Step {
	return tasks.Step{Name: name, Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
		return map[string]string{"step": name, "key": sc.IdempotencyKey()}, nil
	}}
}
