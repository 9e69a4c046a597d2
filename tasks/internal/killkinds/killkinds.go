// Package killkinds declares the task kinds of the kill -9 test, shared by
// the test (which submits them) and the worker binary (which runs them).
// Every step records each run in kill_runs and applies its effect once,
// keyed by the step's idempotency key, in kill_effects.
package killkinds

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rackcloud/rackcloud/tasks"
)

// DDL creates the tables the steps write.
const DDL = `
CREATE TABLE kill_runs (key text NOT NULL, worker text NOT NULL, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE kill_effects (key text PRIMARY KEY, worker text NOT NULL, at timestamptz NOT NULL DEFAULT now());`

// Kind names.
const (
	Three  = "kill.three"
	Parent = "kill.parent"
)

// MaxAttempts is generous: every kill uses up an attempt of the steps the
// killed worker was running.
const MaxAttempts = 50

// Options tune the steps.
type Options struct {
	// DieAtEffect, when > 0, makes the process SIGKILL itself right after
	// its DieAtEffect-th effect, before the step returns: the effect is
	// applied, the step is not recorded.
	DieAtEffect int64
	// MaxSleep bounds the random pauses before and after each effect.
	MaxSleep time.Duration
}

// Kinds returns the kinds; steps write through pool.
func Kinds(pool *pgxpool.Pool, o Options) []tasks.Kind {
	var effects atomic.Int64
	pause := func(ctx context.Context) error {
		if o.MaxSleep <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(rand.N(o.MaxSleep)):
			return nil
		}
	}
	effect := func(ctx context.Context, sc *tasks.StepContext) error {
		key := sc.IdempotencyKey()
		if _, err := pool.Exec(ctx, `INSERT INTO kill_runs (key, worker) VALUES ($1, $2)`, key, sc.Worker); err != nil {
			return err
		}
		if err := pause(ctx); err != nil {
			return err
		}
		if _, err := pool.Exec(ctx, `INSERT INTO kill_effects (key, worker) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING`, key, sc.Worker); err != nil {
			return err
		}
		if n := effects.Add(1); o.DieAtEffect > 0 && n == o.DieAtEffect {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return pause(ctx)
	}
	step := func(name string) tasks.Step {
		return tasks.Step{Name: name, Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			if err := effect(ctx, sc); err != nil {
				return nil, err
			}
			return map[string]string{"key": sc.IdempotencyKey()}, nil
		}}
	}
	return []tasks.Kind{
		{Name: Three, MaxAttempts: MaxAttempts, Steps: []tasks.Step{step("one"), step("two"), step("three")}},
		{Name: Parent, MaxAttempts: MaxAttempts, Steps: []tasks.Step{
			{Name: "spawn", Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
				for _, k := range []string{"left", "right"} {
					if _, err := sc.SpawnChild(ctx, tasks.ChildSpec{Key: k, Kind: Three}); err != nil {
						return nil, err
					}
				}
				if err := effect(ctx, sc); err != nil {
					return nil, err
				}
				return nil, nil
			}},
			{Name: "gather", Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
				kids, err := sc.Children(ctx)
				if err != nil {
					return nil, err
				}
				if len(kids) != 2 {
					return nil, tasks.Permanent(fmt.Errorf("want 2 children, have %d", len(kids)))
				}
				if err := effect(ctx, sc); err != nil {
					return nil, err
				}
				return len(kids), nil
			}},
		}},
	}
}
