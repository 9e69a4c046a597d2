// Command tasks benchmarks rackcloud's task engine against plain River on
// the same PostgreSQL in the same run: no-op tasks of three steps through
// the engine vs River jobs of three resumable steps, for throughput (step
// transitions per second, all work queued up front) and pickup latency
// (submit to first step, one task at a time on idle workers).
//
// River runs twice: with each step checkpointed durably in its own
// transaction (river.ResumableSetStepTx), the same guarantee as the
// engine's per-step record, printed for information; and with plain
// river.ResumableStep, whose progress is written only when an attempt ends
// (a crash replays every step): the peer, and so the BENCH line.
//
// Usage: go run ./bench/tasks [-n 3000] [-workers 50] [-rounds 3]
// It uses DATABASE_URL (a role that may create databases) or starts a
// throwaway cluster.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/rackcloud/rackcloud/lab/postgres"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/tasks:", err)
		os.Exit(1)
	}
}

type config struct {
	n, workers, rounds, pickups int
	cooldown                    time.Duration
}

func run() error {
	var c config
	flag.IntVar(&c.n, "n", 3000, "tasks (and River jobs) per throughput round")
	flag.IntVar(&c.workers, "workers", 50, "concurrent workers, for both")
	flag.IntVar(&c.rounds, "rounds", 3, "throughput rounds (the median is reported)")
	flag.IntVar(&c.pickups, "pickups", 200, "tasks submitted one at a time for pickup latency")
	flag.DurationVar(&c.cooldown, "river-fetch-cooldown", 10*time.Millisecond, "River FetchCooldown (its default is 100ms)")
	only := flag.String("only", "", "run only this system (engine, river, river-plain), for profiling; prints no BENCH line")
	flag.Parse()
	ctx := context.Background()

	dbURL, cleanup, err := database(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	u, err := url.Parse(dbURL)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("pool_max_conns", fmt.Sprint(c.workers+10))
	u.RawQuery = q.Encode()
	pool, err := store.NewPool(ctx, u.String())
	if err != nil {
		return err
	}
	defer pool.Close()
	if _, err := store.Migrate(ctx, pool); err != nil {
		return err
	}
	m, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("river migrate: %w", err)
	}

	systems := []system{
		&engineSystem{pool: pool, workers: c.workers},
		&riverSystem{pool: pool, workers: c.workers, cooldown: c.cooldown, durable: true},
		&riverSystem{pool: pool, workers: c.workers, cooldown: c.cooldown, durable: false},
	}
	if *only != "" {
		i := slices.Index([]string{"engine", "river", "river-plain"}, *only)
		if i < 0 {
			return fmt.Errorf("-only %q: want engine, river or river-plain", *only)
		}
		for r := range c.rounds {
			if err := reset(ctx, pool); err != nil {
				return err
			}
			rate, err := throughput(ctx, systems[i], c.n)
			if err != nil {
				return err
			}
			fmt.Printf("round %d %-28s %8.0f step transitions/s\n", r+1, systems[i].name(), rate)
		}
		return nil
	}
	rates := make([][]float64, len(systems))
	for r := range c.rounds {
		for i, s := range systems {
			if err := reset(ctx, pool); err != nil {
				return err
			}
			rate, err := throughput(ctx, s, c.n)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name(), err)
			}
			fmt.Printf("round %d %-28s %8.0f step transitions/s\n", r+1, s.name(), rate)
			rates[i] = append(rates[i], rate)
		}
	}
	p50s := make([]time.Duration, len(systems))
	p95s := make([]time.Duration, len(systems))
	for i, s := range systems {
		if err := reset(ctx, pool); err != nil {
			return err
		}
		lat, err := pickup(ctx, s, c.pickups)
		if err != nil {
			return fmt.Errorf("%s pickup: %w", s.name(), err)
		}
		p50s[i], p95s[i] = quantile(lat, 0.5), quantile(lat, 0.95)
	}
	fmt.Printf("%d tasks x 3 steps, %d workers, median of %d rounds; pickup over %d sequential submissions\n",
		c.n, c.workers, c.rounds, c.pickups)
	for i, s := range systems {
		fmt.Printf("%-28s %8.0f transitions/s   pickup p50 %6.2f ms  p95 %6.2f ms\n",
			s.name(), median(rates[i]), ms(p50s[i]), ms(p95s[i]))
	}
	eng, peer, plain := median(rates[0]), median(rates[1]), median(rates[2])
	fmt.Printf("engine pickup p95 %.2f ms (target <= 100 ms)\n", ms(p95s[0]))
	fmt.Printf("engine vs river with durable steps (ResumableSetStepTx, the same crash guarantee): river_durable_transitions_per_s=%.0f ratio=%.2f\n", peer, eng/peer)
	// The peer is plain River resumable steps, so it is the BENCH
	// line, even though that peer does not record each step durably.
	fmt.Printf("BENCH tasks transitions_per_s=%.0f river_transitions_per_s=%.0f ratio=%.2f\n", eng, plain, eng/plain)
	return nil
}

// database returns a URL of a fresh database and a cleanup.
func database(ctx context.Context) (string, func(), error) {
	admin := os.Getenv("DATABASE_URL")
	var cluster *postgres.Cluster
	var dir string
	if admin == "" {
		d, err := os.MkdirTemp("", "bench-tasks-")
		if err != nil {
			return "", nil, err
		}
		dir = d
		c, err := postgres.Start(ctx, postgres.Config{Dir: d})
		if err != nil {
			os.RemoveAll(d)
			return "", nil, err
		}
		cluster = c
		admin = c.URL("postgres")
	}
	name := fmt.Sprintf("bench_tasks_%d", os.Getpid())
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", nil, err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE DATABASE `+name); err != nil {
		return "", nil, err
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	return u.String(), func() {
		if c, err := pgx.Connect(ctx, admin); err == nil {
			_, _ = c.Exec(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`)
			c.Close(ctx)
		}
		if cluster != nil {
			cluster.Stop()
			os.RemoveAll(dir)
		}
	}, nil
}

func reset(ctx context.Context, pool *pgxpool.Pool) error {
	_, err := pool.Exec(ctx, `TRUNCATE tasks, task_steps, task_events, task_owners, river_job`)
	if err != nil {
		return err
	}
	_, err = pool.Exec(ctx, `VACUUM ANALYZE tasks, task_steps, task_events, river_job`)
	return err
}

// system is one thing under test.
type system interface {
	name() string
	// start runs workers; onStep is called at the start of every step with
	// the task's number and the step's index.
	start(ctx context.Context, onStep func(i, step int)) (stop func() error, err error)
	// submit queues tasks first..first+n-1 (in one transaction when n > 1).
	submit(ctx context.Context, first, n int) error
	// finished counts the tasks recorded as done.
	finished(ctx context.Context) (int, error)
}

// throughput queues n tasks, then starts the workers and measures until
// all of them are recorded as finished.
func throughput(ctx context.Context, s system, n int) (float64, error) {
	if err := s.submit(ctx, 0, n); err != nil {
		return 0, err
	}
	var last atomic.Int64
	all := make(chan struct{})
	began := time.Now()
	stop, err := s.start(ctx, func(i, step int) {
		if step == 2 && last.Add(1) == int64(n) {
			close(all)
		}
	})
	if err != nil {
		return 0, err
	}
	defer stop()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	select {
	case <-all:
	case <-tctx.Done():
		return 0, errors.New("tasks did not finish")
	}
	for {
		done, err := s.finished(tctx)
		if err != nil {
			return 0, err
		}
		if done >= n {
			break
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(began)
	return float64(3*n) / elapsed.Seconds(), stop()
}

// pickup submits tasks one at a time to idle workers and returns the time
// from each submission's commit to its first step.
func pickup(ctx context.Context, s system, n int) ([]time.Duration, error) {
	var mu sync.Mutex
	firsts := map[int]chan time.Time{}
	for i := range n {
		firsts[i] = make(chan time.Time, 1)
	}
	stop, err := s.start(ctx, func(i, step int) {
		if step == 0 {
			mu.Lock()
			ch := firsts[i]
			mu.Unlock()
			select {
			case ch <- time.Now():
			default:
			}
		}
	})
	if err != nil {
		return nil, err
	}
	defer stop()
	// Let the workers settle into idle.
	time.Sleep(200 * time.Millisecond)
	var lat []time.Duration
	for i := range n {
		if err := s.submit(ctx, i, 1); err != nil {
			return nil, err
		}
		at := time.Now()
		select {
		case t := <-firsts[i]:
			lat = append(lat, t.Sub(at))
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("task %d not picked up", i)
		}
		// Let it finish before the next one, so workers are idle again.
		for {
			done, err := s.finished(ctx)
			if err != nil {
				return nil, err
			}
			if done > i {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
	return lat, stop()
}

// engineSystem is rackcloud's task engine.
type engineSystem struct {
	pool    *pgxpool.Pool
	workers int
	e       *tasks.Engine
	onStep  atomic.Pointer[func(i, step int)]
}

func (s *engineSystem) name() string { return "rackcloud tasks" }

func (s *engineSystem) newEngine(workers int) (*tasks.Engine, error) {
	e, err := tasks.New(s.pool, tasks.Config{Workers: workers, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	step := func(idx int) tasks.Step {
		return tasks.Step{Name: fmt.Sprint("step", idx), Run: func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			var p struct {
				I int `json:"i"`
			}
			if err := sc.Params(&p); err != nil {
				return nil, err
			}
			if f := s.onStep.Load(); f != nil {
				(*f)(p.I, idx)
			}
			return nil, nil
		}}
	}
	err = e.Register(tasks.Kind{Name: "bench.three", Steps: []tasks.Step{step(0), step(1), step(2)}})
	return e, err
}

func (s *engineSystem) start(ctx context.Context, onStep func(i, step int)) (func() error, error) {
	s.onStep.Store(&onStep)
	e, err := s.newEngine(s.workers)
	if err != nil {
		return nil, err
	}
	if err := e.Start(ctx); err != nil {
		return nil, err
	}
	var once sync.Once
	return func() error {
		var err error
		once.Do(func() { err = e.Stop(ctx) })
		return err
	}, nil
}

func (s *engineSystem) submit(ctx context.Context, first, n int) error {
	if s.e == nil {
		e, err := s.newEngine(-1)
		if err != nil {
			return err
		}
		s.e = e
	}
	sub := func(db store.Querier, i int) error {
		_, err := s.e.Submit(ctx, db, tasks.Submission{Kind: "bench.three", Params: map[string]int{"i": i}})
		return err
	}
	if n == 1 {
		return sub(s.pool, first)
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for i := first; i < first+n; i++ {
			if err := sub(tx, i); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *engineSystem) finished(ctx context.Context) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM tasks WHERE state = 'succeeded'`).Scan(&n)
	return n, err
}

// riverSystem is plain River: one job per task, three resumable steps.
type riverSystem struct {
	pool     *pgxpool.Pool
	workers  int
	cooldown time.Duration
	durable  bool
	inserter *river.Client[pgx.Tx]
}

type threeArgs struct {
	I int `json:"i"`
}

func (threeArgs) Kind() string { return "bench_three" }

type threeWorker struct {
	river.WorkerDefaults[threeArgs]
	pool    *pgxpool.Pool
	durable bool
	onStep  func(i, step int)
}

func (w *threeWorker) Work(ctx context.Context, job *river.Job[threeArgs]) error {
	for idx, name := range []string{"step0", "step1", "step2"} {
		river.ResumableStep(ctx, name, nil, func(ctx context.Context) error {
			w.onStep(job.Args.I, idx)
			if !w.durable {
				return nil
			}
			tx, err := w.pool.Begin(ctx)
			if err != nil {
				return err
			}
			defer tx.Rollback(ctx) //nolint:errcheck
			if _, err := river.ResumableSetStepTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
				return err
			}
			return tx.Commit(ctx)
		})
	}
	return nil
}

func (s *riverSystem) name() string {
	if s.durable {
		return "river (durable steps)"
	}
	return "river (steps not durable)"
}

func (s *riverSystem) client(workers int, onStep func(i, step int)) (*river.Client[pgx.Tx], error) {
	ws := river.NewWorkers()
	river.AddWorker(ws, &threeWorker{pool: s.pool, durable: s.durable, onStep: onStep})
	cfg := &river.Config{
		Logger:            slog.New(slog.DiscardHandler),
		FetchCooldown:     s.cooldown,
		FetchPollInterval: time.Second,
		Workers:           ws,
	}
	if workers > 0 {
		cfg.Queues = map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: workers}}
	}
	return river.NewClient(riverpgxv5.New(s.pool), cfg)
}

func (s *riverSystem) start(ctx context.Context, onStep func(i, step int)) (func() error, error) {
	c, err := s.client(s.workers, onStep)
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		return nil, err
	}
	var once sync.Once
	return func() error {
		var err error
		once.Do(func() { err = c.Stop(ctx) })
		return err
	}, nil
}

func (s *riverSystem) submit(ctx context.Context, first, n int) error {
	if s.inserter == nil {
		c, err := s.client(0, func(int, int) {})
		if err != nil {
			return err
		}
		s.inserter = c
	}
	if n == 1 {
		_, err := s.inserter.Insert(ctx, threeArgs{I: first}, nil)
		return err
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		for i := first; i < first+n; i++ {
			if _, err := s.inserter.InsertTx(ctx, tx, threeArgs{I: i}, nil); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *riverSystem) finished(ctx context.Context) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state = 'completed'`).Scan(&n)
	return n, err
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	sort.Float64s(s)
	return s[len(s)/2]
}

func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
