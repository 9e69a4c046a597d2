package vmctl

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// DefaultReload is how often a replica reloads its whole placement
// snapshot even without notifications (a missed NOTIFY, a lost
// connection).
const DefaultReload = 5 * time.Minute

// Keeper holds one replica's placement snapshot in memory: loaded whole
// at start and every Reload, and refreshed host by host from the
// rackcloud_placement notifications that every change of a host's usage,
// capacity or placement fields sends. The snapshot may be stale; the
// database judges every claim (store.ClaimHost), so staleness costs a
// retry, never an over-booking.
type Keeper struct {
	pool   *pgxpool.Pool
	reload time.Duration
	log    *slog.Logger

	mu    sync.RWMutex
	snap  *Snapshot
	ready chan struct{}
	once  sync.Once

	rndMu sync.Mutex
	rnd   *rand.Rand
}

// NewKeeper makes a keeper; Run loads and keeps the snapshot.
func NewKeeper(pool *pgxpool.Pool, reload time.Duration, log *slog.Logger) *Keeper {
	if reload <= 0 {
		reload = DefaultReload
	}
	return &Keeper{pool: pool, reload: reload, log: log, snap: NewSnapshot(nil), ready: make(chan struct{}),
		rnd: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

// Run keeps the snapshot until ctx ends.
func (k *Keeper) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		if err := k.follow(ctx); err != nil && ctx.Err() == nil {
			k.log.Warn("placement snapshot: listening failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// follow listens, loads everything, then applies notifications until the
// connection fails or it is time for a full reload.
func (k *Keeper) follow(ctx context.Context) error {
	l, err := store.Listen(ctx, k.pool, store.PlacementChannel)
	if err != nil {
		return err
	}
	defer l.Close()
	if err := k.Load(ctx); err != nil {
		return err
	}
	deadline := time.Now().Add(k.reload)
	for {
		wctx, cancel := context.WithDeadline(ctx, deadline)
		id, err := l.Next(wctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil || time.Now().After(deadline) {
				return nil // stopping, or a full reload is due
			}
			return err
		}
		ids := map[string]bool{id: true}
		// Take what else is queued, so a burst costs one query.
		for len(ids) < 500 {
			qctx, cancel := context.WithTimeout(ctx, 2*time.Millisecond)
			id, err := l.Next(qctx)
			cancel()
			if err != nil {
				break
			}
			ids[id] = true
		}
		list := make([]string, 0, len(ids))
		for id := range ids {
			list = append(list, id)
		}
		if err := k.Refresh(ctx, list...); err != nil {
			return err
		}
	}
}

// Load replaces the snapshot with the database's hosts.
func (k *Keeper) Load(ctx context.Context) error {
	hosts, err := store.PlacementHosts(ctx, k.pool, nil)
	if err != nil {
		return err
	}
	infos := make([]*HostInfo, len(hosts))
	for i := range hosts {
		infos[i] = hostInfo(hosts[i])
	}
	s := NewSnapshot(infos)
	k.mu.Lock()
	k.snap = s
	k.mu.Unlock()
	k.once.Do(func() { close(k.ready) })
	return nil
}

// Refresh reads the named hosts again (a host that is gone or lost its
// role is removed).
func (k *Keeper) Refresh(ctx context.Context, ids ...string) error {
	hosts, err := store.PlacementHosts(ctx, k.pool, ids)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, h := range hosts {
		seen[h.ID] = true
		if h.Role == "" {
			k.snap.Remove(h.ID)
			continue
		}
		k.snap.Upsert(hostInfo(h))
	}
	for _, id := range ids {
		if !seen[id] {
			k.snap.Remove(id)
		}
	}
	return nil
}

// Ready is closed once the first load succeeded.
func (k *Keeper) Ready() <-chan struct{} { return k.ready }

// Place decides on the current snapshot.
func (k *Keeper) Place(r Request) (Decision, error) {
	k.rndMu.Lock()
	rnd := rand.New(rand.NewPCG(k.rnd.Uint64(), k.rnd.Uint64()))
	k.rndMu.Unlock()
	k.mu.RLock()
	defer k.mu.RUnlock()
	return Place(k.snap, r, rnd)
}

// Claimed charges a claim the database accepted to the snapshot at once,
// before its notification arrives, so that this replica's next decision
// sees it.
func (k *Keeper) Claimed(hostID string, g rackcloud.Guest) {
	k.mu.Lock()
	defer k.mu.Unlock()
	h := k.snap.Host(hostID)
	if h == nil {
		return
	}
	c := *h
	c.Used.CPUCores += g.Flavor.CPUCores
	c.Used.MemoryMiB += g.Flavor.MemoryMiB
	c.Used.DiskGiB += g.Flavor.DiskGiB
	c.Guests++
	if g.PlacementGroupID != "" {
		c.Groups = make(map[string]int, len(h.Groups)+1)
		for id, n := range h.Groups {
			c.Groups[id] = n
		}
		c.Groups[g.PlacementGroupID]++
	}
	k.snap.Upsert(&c)
}

func (k *Keeper) host(id string) *HostInfo {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.snap.Host(id)
}

// Len is the number of hosts in the snapshot.
func (k *Keeper) Len() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.snap.Hosts)
}

func hostInfo(h store.PlacementHost) *HostInfo {
	return &HostInfo{ID: h.ID, Name: h.Name, RegionID: h.RegionID, ZoneID: h.ZoneID, ZoneName: h.ZoneName,
		RackID: h.RackID, RackName: h.RackName, Role: h.Role, State: h.State, Maintenance: h.Maintenance,
		Labels: h.Labels, Total: h.Total, Overhead: h.Overhead,
		Ratio: Overcommit{CPU: h.Ratio.CPU, Memory: h.Ratio.Memory, Disk: h.Ratio.Disk},
		Used:  h.Used, Guests: h.Guests, MaxGuests: h.MaxGuests, Groups: h.Groups}
}
