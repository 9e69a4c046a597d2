package monitor

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/rackcloud/rackcloud/store"
)

// Defaults of Inventory.
const (
	// DefaultMaxAge is how old a snapshot may get before a request starts
	// a reload: service discovery and fleet metrics are some seconds
	// behind the database, never a query per request. A load of 10,000
	// hosts and 100,000 guests takes about a second of the database
	// (bench/monitor); Prometheus refreshes HTTP SD every 60 s by default.
	DefaultMaxAge = 30 * time.Second
	// DefaultLoadTimeout bounds one load of the whole inventory.
	DefaultLoadTimeout = 30 * time.Second
)

// Snapshot is the fleet at one moment: every host and every guest. It is
// never changed once made; read it freely.
type Snapshot struct {
	At     time.Time
	Hosts  []store.MonitorHost
	Guests []store.MonitorGuest

	byID map[string]int // host ID -> index in Hosts

	memoMu sync.Mutex
	memo   map[string]any // what handlers derived from this snapshot
}

// NewSnapshot indexes hosts and guests read at at.
func NewSnapshot(at time.Time, hosts []store.MonitorHost, guests []store.MonitorGuest) *Snapshot {
	s := &Snapshot{At: at, Hosts: hosts, Guests: guests, byID: make(map[string]int, len(hosts)), memo: map[string]any{}}
	for i := range hosts {
		s.byID[hosts[i].ID] = i
	}
	return s
}

// Host returns the host with the ID, or nil.
func (s *Snapshot) Host(id string) *store.MonitorHost {
	if i, ok := s.byID[id]; ok {
		return &s.Hosts[i]
	}
	return nil
}

// derive returns what build derives from s, made once per snapshot and key.
func derive[T any](s *Snapshot, key string, build func() T) T {
	s.memoMu.Lock()
	defer s.memoMu.Unlock()
	if v, ok := s.memo[key]; ok {
		return v.(T)
	}
	v := build()
	s.memo[key] = v
	return v
}

// LoadFunc reads the whole inventory (store.MonitorInventory on a pool).
type LoadFunc func(ctx context.Context) ([]store.MonitorHost, []store.MonitorGuest, error)

// Inventory keeps the latest Snapshot, reloading it lazily: a snapshot
// older than MaxAge is still served while one reload (shared by every
// caller) runs in the background, so a scrape or a discovery request never
// waits for the database once the first load is done. A replica nobody
// asks loads nothing.
type Inventory struct {
	load        LoadFunc
	maxAge      time.Duration
	loadTimeout time.Duration
	now         func() time.Time
	log         *slog.Logger

	mu      sync.Mutex
	snap    *Snapshot
	err     error         // the last load's error, nil after a success
	loading chan struct{} // closed when the running load ends; nil when none runs
	onLoad  []func(*Snapshot)
}

// OnLoad adds f to what runs, in the background, on each new snapshot
// before it is served (the handlers render their answers there, so that
// no request pays for it). Call it before the first load.
func (inv *Inventory) OnLoad(f func(*Snapshot)) {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.onLoad = append(inv.onLoad, f)
}

// NewInventory makes an inventory that loads with load; maxAge 0 is
// DefaultMaxAge.
func NewInventory(load LoadFunc, maxAge time.Duration, log *slog.Logger) *Inventory {
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Inventory{load: load, maxAge: maxAge, loadTimeout: DefaultLoadTimeout, now: time.Now, log: log}
}

// StoreLoader loads the inventory from the state store.
func StoreLoader(q store.Querier) LoadFunc {
	return func(ctx context.Context) ([]store.MonitorHost, []store.MonitorGuest, error) {
		return store.MonitorInventory(ctx, q)
	}
}

// Current returns the latest snapshot without waiting (nil before the
// first load ends) and starts a reload when it is missing or stale.
func (inv *Inventory) Current() *Snapshot {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	inv.refreshLocked()
	return inv.snap
}

// Snapshot returns the latest snapshot, waiting for the first load (or
// ctx) when there is none yet; a stale one is returned at once while it
// reloads.
func (inv *Inventory) Snapshot(ctx context.Context) (*Snapshot, error) {
	inv.mu.Lock()
	done := inv.refreshLocked()
	s := inv.snap
	inv.mu.Unlock()
	if s != nil {
		return s, nil
	}
	select {
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	case <-done:
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	if inv.snap == nil {
		return nil, inv.err
	}
	return inv.snap, nil
}

// refreshLocked starts a load when the snapshot is missing or stale and
// none runs, and returns the running load's done channel (nil when none).
func (inv *Inventory) refreshLocked() <-chan struct{} {
	if inv.loading != nil || (inv.snap != nil && inv.now().Sub(inv.snap.At) < inv.maxAge) {
		return inv.loading
	}
	done := make(chan struct{})
	inv.loading = done
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeoutCause(context.Background(), inv.loadTimeout,
			errors.New("monitor: loading the inventory timed out"))
		defer cancel()
		at := inv.now()
		hosts, guests, err := inv.load(ctx)
		var snap *Snapshot
		if err == nil {
			snap = NewSnapshot(at, hosts, guests)
			inv.mu.Lock()
			hooks := inv.onLoad
			inv.mu.Unlock()
			for _, f := range hooks {
				f(snap)
			}
		}
		inv.mu.Lock()
		defer inv.mu.Unlock()
		inv.loading = nil
		inv.err = err
		if err != nil {
			inv.log.Warn("monitor: loading the inventory failed; serving the previous snapshot", "err", err)
			return
		}
		inv.snap = snap
	}()
	return done
}

// Err is the last load's error (nil after a success).
func (inv *Inventory) Err() error {
	inv.mu.Lock()
	defer inv.mu.Unlock()
	return inv.err
}
