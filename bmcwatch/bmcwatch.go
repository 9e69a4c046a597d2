// Package bmcwatch keeps what the state store says about each host's power
// and BMC health true, by polling the hosts' BMCs with package bmc's
// Poller (one request at a time per BMC, rate-limited, jittered, backing
// off from BMCs that fail). A BMC that stops answering marks its host's
// BMC unhealthy with the error, and its power unknown, without slowing the
// polls of the others. What it records is an observation, not an edit: it
// never changes a host's version (ETag), and the error it records is one
// short line (bmc.Reason), the full detail going to the log.
//
// A poll's result is recorded only if the host's BMC address and
// credentials are still those the poll began with: a trigger counts their
// changes in hosts.bmc_generation and store.RecordBMCObservation compares
// it in the same statement, so a poll made with an old password never
// overwrites what the new one finds (the result is discarded and counted,
// rackcloud_bmcwatch_stale_results_total). A change also notifies the
// polling replica (LISTEN/NOTIFY), which polls that BMC with the new
// credentials at once instead of at its next interval.
//
// Several server replicas may run a Watcher; one polls at a time: the one
// holding a PostgreSQL advisory lock on its own connection
// (store.WithLeaderLock). The others
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
	// BMCs), the polling replica checks its lock's connection, and a
	// standby replica tries to take over (DefaultRefresh when zero). A
	// change to a host's BMC credentials is seen at once (LISTEN/NOTIFY);
	// the refresh is the fallback.
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
	stale    prometheus.Counter
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
		stale: prometheus.NewCounter(prometheus.CounterOpts{Name: "rackcloud_bmcwatch_stale_results_total",
			Help: "Poll results discarded because the host's BMC address or credentials changed after the poll began."}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{w.leader, w.attempts, w.hosts, w.writes, w.dropped, w.stale} {
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
		held, err := store.WithLeaderLock(ctx, w.cfg.Pool, lockKey, w.cfg.Refresh, w.lead)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			w.log.Warn("bmcwatch: not polling", "err", err)
		}
		if !held && err == nil {
			w.attempts.WithLabelValues("held").Inc()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(w.cfg.Refresh):
		}
	}
}

// lead polls, while this replica holds the lock, until ctx ends.
func (w *Watcher) lead(ctx context.Context) error {
	w.attempts.WithLabelValues("acquired").Inc()
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
	changes := make(chan struct{}, 1)
	pctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = p.Run(pctx)
	}()
	go func() {
		defer wg.Done()
		w.listen(pctx, changes)
	}()
	defer func() {
		stop()
		wg.Wait()
	}()

	known := map[string]store.BMCTarget{}
	w.refresh(ctx, p, known)
	tick := time.NewTicker(w.cfg.Refresh)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-results:
			w.record(ctx, r, known)
		case <-changes:
			w.refresh(ctx, p, known)
		case <-tick.C:
			w.refresh(ctx, p, known)
		}
	}
}

// listen signals changes whenever a host's BMC address or credentials
// change (store.ListenBMCChanges), so that the new credentials are polled
// at once rather than at the next refresh, and once each time it starts
// listening (to catch what changed while it was not). It reconnects after
// Refresh when its connection is lost; the periodic refresh covers the
// gap.
func (w *Watcher) listen(ctx context.Context, changes chan<- struct{}) {
	signal := func() {
		select {
		case changes <- struct{}{}:
		default:
		}
	}
	for ctx.Err() == nil {
		l, err := store.ListenBMCChanges(ctx, w.cfg.Pool)
		if err == nil {
			signal()
			for {
				var id string
				if id, err = l.Next(ctx); err != nil {
					break
				}
				w.log.Debug("bmcwatch: BMC credentials changed", "host", id)
				signal()
			}
			l.Close()
		}
		if ctx.Err() != nil {
			return
		}
		w.log.Warn("bmcwatch: not listening for BMC changes", "err", err, "retry_in", w.cfg.Refresh)
		select {
		case <-ctx.Done():
		case <-time.After(w.cfg.Refresh):
		}
	}
}

// refresh brings the poller's BMCs in line with the hosts table.
func (w *Watcher) refresh(ctx context.Context, p *bmc.Poller, known map[string]store.BMCTarget) {
	targets, err := store.ListBMCTargets(ctx, w.cfg.Pool)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("bmcwatch: read hosts", "err", err)
		}
		return
	}
	seen := map[string]bool{}
	for _, t := range targets {
		seen[t.HostID] = true
		if known[t.HostID] == t {
			continue
		}
		known[t.HostID] = t
		fail := func(reason string, err error) {
			p.Remove(t.HostID)
			w.log.Warn("bmcwatch: cannot poll the host's BMC", "host", t.HostID, "bmc", t.Address, "error", reason, "detail", err)
			w.write(ctx, store.BMCObservation{HostID: t.HostID, Generation: t.Generation, Power: rackcloud.PowerUnknown,
				Error: reason}, t.Address, nil)
		}
		pw, err := w.cfg.Sealer.Open(t.Sealed, []byte(t.HostID))
		if err != nil {
			fail("cannot open the stored BMC password (was the server's secret key changed?)", err)
			continue
		}
		ep := bmc.Endpoint{Protocol: t.Protocol, Address: t.Address, Username: t.Username, Password: bmc.NewSecret(pw)}
		if err := p.SetGeneration(t.HostID, ep, t.Generation); err != nil {
			fail(bmc.Reason(err), err)
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
func (w *Watcher) record(ctx context.Context, r bmc.PollResult, known map[string]store.BMCTarget) {
	t, ok := known[r.ID]
	if !ok {
		return // removed meanwhile
	}
	o := store.BMCObservation{HostID: r.ID, Generation: r.Generation, Power: r.Power, Healthy: r.Health.Healthy}
	if r.Err != nil {
		o.Power = rackcloud.PowerUnknown
	}
	if !o.Healthy {
		o.Error = r.Health.Error
		if o.Error == "" && r.Err != nil {
			o.Error = bmc.Reason(r.Err)
		}
	}
	w.write(ctx, o, t.Address, r.Err)
}

// write records an observation on its host if it changed anything, and
// only while the host's BMC credentials are still those the poll began
// with: a stale result is discarded and counted. Observations are not
// edits: the host's version (ETag) does not move. detail, the poll's
// error if any, goes to the log only.
func (w *Watcher) write(ctx context.Context, o store.BMCObservation, address string, detail error) {
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	changed, err := store.RecordBMCObservation(wctx, w.cfg.Pool, o)
	switch {
	case errors.Is(err, store.ErrBMCChanged):
		w.stale.Inc()
		w.log.Debug("bmcwatch: stale poll result discarded (the host's BMC changed since the poll began)",
			"host", o.HostID, "bmc", address, "generation", o.Generation)
	case err != nil:
		if ctx.Err() == nil {
			w.log.Warn("bmcwatch: record poll", "host", o.HostID, "err", err)
		}
	case changed:
		w.writes.Inc()
		attrs := []any{"host", o.HostID, "bmc", address, "power", o.Power, "healthy", o.Healthy}
		if !o.Healthy {
			attrs = append(attrs, "error", o.Error)
			if detail != nil {
				attrs = append(attrs, "detail", detail.Error())
			}
		}
		w.log.Info("bmcwatch: host BMC changed", attrs...)
	}
}
