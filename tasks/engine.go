package tasks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// Defaults for Config.
const (
	DefaultWorkers         = 10
	DefaultLeaseTTL        = 15 * time.Second
	DefaultPollInterval    = time.Second
	DefaultMaxAttempts     = 3
	DefaultRetryBase       = time.Second
	DefaultRetryMax        = 5 * time.Minute
	DefaultMetricsInterval = 10 * time.Second
	DefaultRetention       = 30 * 24 * time.Hour
	DefaultPruneInterval   = 10 * time.Minute
)

// Config configures an Engine.
type Config struct {
	// ID names this worker in leases and logs; empty means
	// "<hostname>/<pid>/<random>". It must differ between live engines.
	ID string
	// Workers is how many tasks this engine runs at once; 0 means
	// DefaultWorkers, a negative value runs none (an engine that only
	// submits, queries and follows).
	Workers int
	// LeaseTTL is how long a claimed task stays with this worker without a
	// heartbeat; heartbeats run every LeaseTTL/3. A task whose worker died
	// is claimable again after at most LeaseTTL, and picked up within
	// PollInterval after that.
	LeaseTTL time.Duration
	// PollInterval is how often workers look for ready tasks (due retries,
	// expired leases) and followers re-read events without a notification.
	PollInterval time.Duration
	// MaxAttempts bounds the attempts of each step of kinds that do not set
	// their own.
	MaxAttempts int
	// RetryBase and RetryMax shape the exponential backoff between attempts
	// of a step: RetryBase, 2*RetryBase, 4*RetryBase... at most RetryMax.
	RetryBase time.Duration
	RetryMax  time.Duration
	// MetricsInterval is how often the queue depth gauge is refreshed.
	MetricsInterval time.Duration
	// Retention is how long a task tree is kept after its root task
	// ended (with its steps and events); 0 means DefaultRetention, a
	// negative value keeps every task. Engines with workers prune every
	// PruneInterval (0 means DefaultPruneInterval).
	Retention     time.Duration
	PruneInterval time.Duration
	// Logger receives the engine's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the engine's metrics; nil registers none.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() Config {
	if c.ID == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		c.ID = fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.RetryBase <= 0 {
		c.RetryBase = DefaultRetryBase
	}
	if c.RetryMax <= 0 {
		c.RetryMax = DefaultRetryMax
	}
	if c.MetricsInterval <= 0 {
		c.MetricsInterval = DefaultMetricsInterval
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.PruneInterval <= 0 {
		c.PruneInterval = DefaultPruneInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// registered is a kind with its shape for the state machine.
type registered struct {
	Kind
	shape shape
}

// Engine runs tasks: it claims ready tasks of the registered kinds, runs
// their steps under a lease, records every transition, and serves
// submissions, queries, cancels and event streams. Several engines (in one
// process or many) share one database safely.
type Engine struct {
	pool    *pgxpool.Pool
	cfg     Config
	log     *slog.Logger
	m       *metrics
	backoff backoffFunc
	hub     *hub

	mu      sync.RWMutex
	kinds   map[string]*registered
	names   []string
	started bool

	runMu   sync.Mutex
	running map[int64]*runner // by lease token

	busy      atomic.Int64
	maybeMore atomic.Bool
	wake      chan struct{}

	stopOnce sync.Once
	stopping atomic.Bool
	// stopClaims ends the claim loop; claimer is done when it returned,
	// so that no runner starts after Stop began waiting for them.
	stopClaims chan struct{}
	claimer    sync.WaitGroup
	cancel     context.CancelCauseFunc
	loops      sync.WaitGroup
	runners    sync.WaitGroup
	listening  atomic.Bool
}

// New returns an engine on pool. Register the kinds, then Start it.
func New(pool *pgxpool.Pool, cfg Config) (*Engine, error) {
	if pool == nil {
		return nil, errors.New("tasks: nil pool")
	}
	cfg = cfg.withDefaults()
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("tasks: metrics: %w", err)
	}
	e := &Engine{
		pool:    pool,
		cfg:     cfg,
		log:     cfg.Logger.With("worker", cfg.ID),
		m:       m,
		backoff: exponentialBackoff(cfg.RetryBase, cfg.RetryMax),
		hub:     newHub(),
		kinds:   map[string]*registered{},
		running: map[int64]*runner{},
		wake:    make(chan struct{}, 1),

		stopClaims: make(chan struct{}),
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(newTimeoutsCollector(e)); err != nil {
			return nil, fmt.Errorf("tasks: metrics: %w", err)
		}
	}
	return e, nil
}

// Register adds a kind. It fails with rackcloud.ErrInvalid for a malformed
// kind, with rackcloud.ErrConflict for a name already registered, and after
// Start.
func (e *Engine) Register(k Kind) error {
	if err := k.validate(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		return fmt.Errorf("tasks: register %s: engine already started", k.Name)
	}
	if _, dup := e.kinds[k.Name]; dup {
		return fmt.Errorf("%w: task kind %s registered twice", rackcloud.ErrConflict, k.Name)
	}
	k.Steps = slices.Clone(k.Steps)
	e.kinds[k.Name] = &registered{Kind: k, shape: k.shape(e.cfg.MaxAttempts)}
	e.names = append(e.names, k.Name)
	return nil
}

func (e *Engine) kind(name string) *registered {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.kinds[name]
}

// ID returns the engine's worker ID.
func (e *Engine) ID() string { return e.cfg.ID }

// Start starts listening for notifications and, unless Config.Workers is
// negative, claiming and running tasks. It returns at once; the engine runs
// until ctx ends or Stop is called.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		return errors.New("tasks: engine already started")
	}
	e.started = true
	e.mu.Unlock()
	ctx, cancel := context.WithCancelCause(ctx)
	e.cancel = cancel
	e.go_(func() { e.listen(ctx) })
	e.go_(func() { e.metricsLoop(ctx) })
	if e.cfg.Workers > 0 && len(e.names) > 0 {
		e.claimer.Add(1)
		e.go_(func() {
			defer e.claimer.Done()
			e.claimLoop(ctx)
		})
		e.go_(func() { e.heartbeatLoop(ctx) })
		if e.cfg.Retention > 0 {
			e.go_(func() { e.pruneLoop(ctx) })
		}
	}
	return nil
}

func (e *Engine) go_(f func()) {
	e.loops.Add(1)
	go func() {
		defer e.loops.Done()
		f()
	}()
}

// StopGrace is how long Stop waits for interrupted steps to return.
const StopGrace = 5 * time.Second

// Stop stops claiming, lets running steps finish until ctx ends, then
// interrupts them (their context ends with ErrStopping) and gives their
// tasks back without using up the attempt. A step that ignores its context
// for StopGrace more is left behind with an error (its lease expires). It
// is safe to call twice.
func (e *Engine) Stop(ctx context.Context) error {
	var err error
	e.stopOnce.Do(func() {
		e.stopping.Store(true)
		close(e.stopClaims)
		e.claimer.Wait()
		done := make(chan struct{})
		go func() {
			e.runners.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			e.runMu.Lock()
			for _, r := range e.running {
				r.interrupt(ErrStopping)
			}
			e.runMu.Unlock()
			select {
			case <-done:
			case <-time.After(StopGrace):
				err = fmt.Errorf("tasks: stop: %d step(s) ignored their context", e.busy.Load())
			}
		}
		if e.cancel != nil {
			e.cancel(ErrStopping)
		}
		e.loops.Wait()
	})
	return err
}

// signal wakes the claim loop.
func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *Engine) claimLoop(ctx context.Context) {
	tick := time.NewTicker(e.cfg.PollInterval)
	defer tick.Stop()
	for {
		for !e.stopping.Load() {
			free := int64(e.cfg.Workers) - e.busy.Load()
			if free <= 0 {
				// A runner that ends wakes us for what may be waiting;
				// re-read busy in case one ended before it could see that.
				e.maybeMore.Store(true)
				if int64(e.cfg.Workers)-e.busy.Load() <= 0 {
					break
				}
				continue
			}
			n, err := e.claim(ctx, int(free))
			if err != nil {
				if ctx.Err() == nil {
					e.log.Warn("claim tasks", "err", err)
				}
				break
			}
			e.maybeMore.Store(n == int(free))
			if n < int(free) {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-e.stopClaims:
			return
		case <-e.wake:
		case <-tick.C:
		}
	}
}

// claim leases up to n tasks and starts a runner for each.
func (e *Engine) claim(ctx context.Context, n int) (int, error) {
	e.mu.RLock()
	names := e.names
	e.mu.RUnlock()
	rows, err := e.pool.Query(ctx, sqlClaim, names, n, e.cfg.ID, e.cfg.LeaseTTL.Milliseconds())
	if err != nil {
		return 0, err
	}
	type claimed struct {
		taskRow
		Fresh    bool    `db:"fresh"`
		Waited   float64 `db:"waited"`
		Snoozed  float64 `db:"snoozed"`
		Notified int64   `db:"notified"`
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByName[claimed])
	if err != nil {
		return 0, err
	}
	for i := range got {
		c := got[i]
		k := e.kind(c.Kind)
		if c.Fresh {
			e.m.pickup.Observe(max(c.Waited, 0))
		}
		if c.Claims == 1 {
			e.m.started.WithLabelValues(c.Kind).Inc()
		}
		r := e.newRunner(ctx, k, &c.taskRow, time.Duration(c.Snoozed*float64(time.Second)))
		e.busy.Add(1)
		e.m.running.Inc()
		e.runners.Add(1)
		go func() {
			defer func() {
				e.runMu.Lock()
				delete(e.running, r.token)
				e.runMu.Unlock()
				e.busy.Add(-1)
				e.m.running.Dec()
				e.runners.Done()
				if e.maybeMore.Load() {
					e.signal()
				}
			}()
			r.run()
		}()
	}
	return len(got), nil
}

func (e *Engine) heartbeatLoop(ctx context.Context) {
	tick := time.NewTicker(e.cfg.LeaseTTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		e.heartbeat(ctx)
	}
}

// heartbeat extends the leases of the running tasks; a task whose lease is
// gone, or that could not be extended for most of a lease, is interrupted
// with ErrLeaseLost.
func (e *Engine) heartbeat(ctx context.Context) {
	e.runMu.Lock()
	tokens := make([]int64, 0, len(e.running))
	for t := range e.running {
		tokens = append(tokens, t)
	}
	e.runMu.Unlock()
	if len(tokens) == 0 {
		return
	}
	start := time.Now()
	hctx, cancel := context.WithTimeout(ctx, e.cfg.LeaseTTL/3)
	defer cancel()
	rows, err := e.pool.Query(hctx, sqlHeartbeat, e.cfg.ID, tokens, e.cfg.LeaseTTL.Milliseconds())
	held := map[int64]bool{}
	canceled := map[int64]bool{}
	if err == nil {
		for rows.Next() {
			var tok int64
			var c bool
			if err = rows.Scan(&tok, &c); err != nil {
				break
			}
			held[tok], canceled[tok] = true, c
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	e.runMu.Lock()
	defer e.runMu.Unlock()
	for _, tok := range tokens {
		r := e.running[tok]
		if r == nil {
			continue
		}
		switch {
		case err != nil:
			// Unknown: give up before the lease can expire under us.
			if time.Since(r.lastBeat()) > e.cfg.LeaseTTL*5/6 {
				r.loseLease()
			}
		case held[tok]:
			r.beat(start)
			if canceled[tok] {
				r.observeCancel()
			}
		default:
			r.loseLease()
		}
	}
	if err != nil && ctx.Err() == nil {
		e.log.Warn("heartbeat", "tasks", len(tokens), "err", err)
	}
}

// runnerByID finds a local runner of task id.
func (e *Engine) runnerByID(id string) *runner {
	e.runMu.Lock()
	defer e.runMu.Unlock()
	for _, r := range e.running {
		if r.row.ID == id {
			return r
		}
	}
	return nil
}

func (e *Engine) metricsLoop(ctx context.Context) {
	tick := time.NewTicker(e.cfg.MetricsInterval)
	defer tick.Stop()
	for {
		e.refreshQueueDepth(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (e *Engine) refreshQueueDepth(ctx context.Context) {
	qctx, cancel := context.WithTimeout(ctx, e.cfg.MetricsInterval)
	defer cancel()
	var ready, scheduled, snoozed, running, waiting int64
	if err := e.pool.QueryRow(qctx, sqlQueueDepth).Scan(&ready, &scheduled, &snoozed, &running, &waiting); err != nil {
		if ctx.Err() == nil {
			e.log.Warn("queue depth", "err", err)
		}
		return
	}
	e.m.queue.WithLabelValues("ready").Set(float64(ready))
	e.m.queue.WithLabelValues("scheduled").Set(float64(scheduled))
	e.m.queue.WithLabelValues("snoozed").Set(float64(snoozed))
	e.m.queue.WithLabelValues("running").Set(float64(running))
	e.m.queue.WithLabelValues("waiting").Set(float64(waiting))
}

// pruneBatch bounds one prune statement, so that deleting a large backlog
// does not hold locks on many rows for long.
const pruneBatch = 500

// pruneBreather is the pause between two full prune batches.
const pruneBreather = 50 * time.Millisecond

// Prune deletes the task trees whose root ended before before, whose
// every task has ended, with their steps, events and API owners, and
// returns how many root tasks it deleted. It deletes in batches, skipping
// rows other transactions hold; several engines may prune at once.
func (e *Engine) Prune(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		var n int64
		if err := e.pool.QueryRow(ctx, sqlPrune, before, pruneBatch).Scan(&n); err != nil {
			return total, fmt.Errorf("prune tasks: %w", store.MapError(err))
		}
		total += n
		e.m.pruned.Add(float64(n))
		if n < pruneBatch {
			return total, nil
		}
		// A backlog (the first prune after an upgrade) goes in batches
		// with room for the task writes between them.
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(pruneBreather):
		}
	}
}

func (e *Engine) pruneLoop(ctx context.Context) {
	tick := time.NewTicker(e.cfg.PruneInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n, err := e.Prune(ctx, time.Now().Add(-e.cfg.Retention))
		switch {
		case err != nil && ctx.Err() == nil:
			e.log.Warn("prune ended tasks", "err", err)
		case n > 0:
			e.log.Info("pruned ended tasks", "tasks", n, "retention", e.cfg.Retention)
		}
	}
}
