// Package bmcwatch keeps what the state store says about each host's power
// and BMC health true, by polling the hosts' BMCs with package bmc's
// Poller (one request at a time per BMC, rate-limited, jittered, backing
// off from BMCs that fail). A BMC that stops answering marks its host's
// BMC unhealthy with the error, and its power unknown, without slowing the
// polls of the others.
//
// Several server replicas may run a Watcher; one polls at a time: the one
// holding a PostgreSQL advisory lock on its own connection. The others
// stand by and take over within Config.Refresh when it goes away, so that
// BMCs are asked once, not once per replica.
package bmcwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/store"
)

// DefaultRefresh is how often the host list is re-read and a standby tries
// to become the poller.
const DefaultRefresh = 10 * time.Second

// lockKey is the advisory lock of the polling replica ("rcbw").
const lockKey int64 = 0x72636277

// Config configures a Watcher.
type Config struct {
	Pool    *pgxpool.Pool
	Sealer  *store.Sealer
	Manager *bmc.Manager
	// Interval is how often each BMC is polled (bmc.DefaultPollInterval
	// when zero).
	Interval time.Duration
	// Refresh is how often the hosts are re-read (new, changed and removed
	// BMCs) and a standby replica tries to take over (DefaultRefresh when
	// zero).
	Refresh    time.Duration
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Watcher polls the hosts' BMCs and records what it finds.
type Watcher struct {
	cfg Config
	log *slog.Logger

	leader   prometheus.Gauge
	attempts *prometheus.CounterVec
	hosts    *prometheus.GaugeVec
	writes   prometheus.Counter
	dropped  prometheus.Counter
}

// New returns a Watcher; Run starts it.
func New(cfg Config) (*Watcher, error) {
	if cfg.Pool == nil || cfg.Sealer == nil || cfg.Manager == nil {
		return nil, errors.New("bmcwatch: Pool, Sealer and Manager are required")
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{cfg: cfg, log: cfg.Logger,
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rackcloud_bmcwatch_leader",
			Help: "1 while this replica is the one polling the hosts' BMCs."}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rackcloud_bmcwatch_lock_attempts_total",
			Help: "Tries to become the polling replica, by result: acquired, or held (by another replica)."},
			[]string{"result"}),
		hosts: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rackcloud_bmcwatch_hosts",
			Help: "Hosts with a BMC polled by this replica, by the BMC's health: healthy, unhealthy, or pending (not polled yet)."},
			[]string{"health"}),
		writes: prometheus.NewCounter(prometheus.CounterOpts{Name: "rackcloud_bmcwatch_updates_total",
			Help: "Host records changed because a poll found a new power state or BMC health."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "rackcloud_bmcwatch_results_dropped_total",
			Help: "Poll results dropped because the recorder fell behind (the next poll of the BMC repeats them)."}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{w.leader, w.attempts, w.hosts, w.writes, w.dropped} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("bmcwatch: metrics: %w", err)
			}
		}
	}
	return w, nil
}

// Run polls while this replica holds the lock and stands by otherwise,
// until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	for {
		if err := w.lead(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("bmcwatch: not polling", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(w.cfg.Refresh):
		}
	}
}

// target is what a host's BMC is polled with; a change re-arms the poller.
type target struct {
	address, protocol, username, sealed string
}

// lead takes the lock if it is free and polls until ctx ends or the lock's
// connection is lost. It returns nil at once when another replica polls.
func (w *Watcher) lead(ctx context.Context) error {
	conn, err := w.cfg.Pool.Acquire(ctx)
	if err != nil {
		return err
	}
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, lockKey).Scan(&got); err != nil {
		conn.Release()
		return err
	}
	if !got {
		conn.Release()
		w.attempts.WithLabelValues("held").Inc()
		return nil
	}
	w.attempts.WithLabelValues("acquired").Inc()
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, lockKey); err != nil {
			// A connection that still holds the lock must not go back
			// to the pool.
			_ = conn.Conn().Close(uctx)
		}
		conn.Release()
	}()
	w.leader.Set(1)
	defer w.leader.Set(0)
	w.log.Info("bmcwatch: polling the hosts' BMCs", "interval", w.cfg.Interval)

	results := make(chan bmc.PollResult, 1024)
	p := w.cfg.Manager.NewPoller(bmc.PollerConfig{Interval: w.cfg.Interval, OnResult: func(r bmc.PollResult) {
		select {
		case results <- r:
		default:
			w.dropped.Inc()
		}
	}})
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = p.Run(pctx)
	}()
	defer func() {
		stop()
		wg.Wait()
	}()

	known := map[string]target{}
	w.refresh(ctx, p, known)
	tick := time.NewTicker(w.cfg.Refresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-results:
			w.record(ctx, r, known)
		case <-tick.C:
			pctx, cancel := context.WithTimeout(ctx, w.cfg.Refresh)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("the polling lock's connection is lost: %w", err)
			}
			w.refresh(ctx, p, known)
		}
	}
}

// refresh brings the poller's BMCs in line with the hosts table.
func (w *Watcher) refresh(ctx context.Context, p *bmc.Poller, known map[string]target) {
	rows, err := w.cfg.Pool.Query(ctx, `SELECT id::text, bmc_address, bmc_protocol, bmc_username, bmc_password_sealed
		FROM hosts WHERE bmc_address IS NOT NULL AND bmc_password_sealed <> ''`)
	if err != nil {
		w.log.Warn("bmcwatch: read hosts", "err", err)
		return
	}
	seen := map[string]bool{}
	var fresh []struct {
		id string
		t  target
	}
	for rows.Next() {
		var id string
		var t target
		if err := rows.Scan(&id, &t.address, &t.protocol, &t.username, &t.sealed); err != nil {
			rows.Close()
			w.log.Warn("bmcwatch: read hosts", "err", err)
			return
		}
		seen[id] = true
		if known[id] != t {
			fresh = append(fresh, struct {
				id string
				t  target
			}{id, t})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		w.log.Warn("bmcwatch: read hosts", "err", err)
		return
	}
	for _, f := range fresh {
		known[f.id] = f.t
		pw, err := w.cfg.Sealer.Open(f.t.sealed, []byte(f.id))
		if err != nil {
			p.Remove(f.id)
			w.write(ctx, f.id, f.t.address, rackcloud.PowerUnknown, false,
				"cannot open the stored BMC password (was the server's secret key changed?)")
			continue
		}
		ep := bmc.Endpoint{Protocol: rackcloud.BMCProtocol(f.t.protocol), Address: f.t.address, Username: f.t.username, Password: bmc.NewSecret(pw)}
		if err := p.Set(f.id, ep); err != nil {
			p.Remove(f.id)
			w.write(ctx, f.id, f.t.address, rackcloud.PowerUnknown, false, err.Error())
		}
	}
	for id := range known {
		if !seen[id] {
			delete(known, id)
			p.Remove(id)
		}
	}
	res := p.Results()
	var healthy, unhealthy, pending float64
	for id := range known {
		r, ok := res[id]
		switch {
		case !ok:
			pending++
		case r.Health.Healthy:
			healthy++
		default:
			unhealthy++
		}
	}
	w.hosts.WithLabelValues("healthy").Set(healthy)
	w.hosts.WithLabelValues("unhealthy").Set(unhealthy)
	w.hosts.WithLabelValues("pending").Set(pending)
}

// record writes one poll's outcome to its host.
func (w *Watcher) record(ctx context.Context, r bmc.PollResult, known map[string]target) {
	t, ok := known[r.ID]
	if !ok {
		return // removed meanwhile
	}
	power, errText := r.Power, ""
	if r.Err != nil {
		power = rackcloud.PowerUnknown
	}
	if !r.Health.Healthy {
		errText = r.Health.Error
		if errText == "" && r.Err != nil {
			errText = r.Err.Error()
		}
	}
	w.write(ctx, r.ID, t.address, power, r.Health.Healthy, errText)
}

// write records power and health on the host if they changed, and only
// while the host still has that BMC (a result about a BMC the operator
// just replaced is dropped). A change is a new version of the host.
func (w *Watcher) write(ctx context.Context, id, address string, power rackcloud.PowerState, healthy bool, errText string) {
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tag, err := w.cfg.Pool.Exec(wctx, `UPDATE hosts SET power = $3, bmc_healthy = $4, bmc_error = $5,
		version = version + 1, updated_at = now()
		WHERE id = $1::uuid AND bmc_address = $2
			AND (power <> $3 OR bmc_healthy <> $4 OR bmc_error <> $5)`,
		id, address, string(power), healthy, errText)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("bmcwatch: record poll", "host", id, "err", err)
		}
		return
	}
	if tag.RowsAffected() > 0 {
		w.writes.Inc()
		w.log.Info("bmcwatch: host BMC changed", "host", id, "bmc", address, "power", power, "healthy", healthy, "error", errText)
	}
}
