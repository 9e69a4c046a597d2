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

	mu   sync.RWMutex
	snap *Snapshot
	// pending are the reservations made on this snapshot whose claims
	// are not known to have committed, by host: a refresh from the
	// database re-charges them, so that the replica's own decisions in
	// flight never count the same free share twice.
	pending map[string][]*Reservation
	ready   chan struct{}
	once    sync.Once

	rndMu sync.Mutex
	rnd   *rand.Rand
}

// NewKeeper makes a keeper; Run loads and keeps the snapshot.
func NewKeeper(pool *pgxpool.Pool, reload time.Duration, log *slog.Logger) *Keeper {
	if reload <= 0 {
		reload = DefaultReload
	}
	return &Keeper{pool: pool, reload: reload, log: log, snap: NewSnapshot(nil), pending: map[string][]*Reservation{},
		ready: make(chan struct{}),
		rnd:   rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
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

// batchWindow is how long a notification waits for others to share its
// refresh query.
const batchWindow = time.Millisecond

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
		// Take what else is queued within batchWindow, so that a burst
		// costs one query, but a steady stream of claims does not hold
		// the snapshot back (the window is per batch, not per notice).
		qctx, cancel := context.WithTimeout(ctx, batchWindow)
		for len(ids) < 500 {
			id, err := l.Next(qctx)
			if err != nil {
				break
			}
			ids[id] = true
		}
		cancel()
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
	for id := range k.pending {
		k.recharge(id)
	}
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
		k.recharge(h.ID)
	}
	for _, id := range ids {
		if !seen[id] {
			k.snap.Remove(id)
		}
	}
	return nil
}

// recharge charges the pending reservations on host id to a copy just
// read from the database. k.mu is held.
func (k *Keeper) recharge(id string) {
	for _, res := range k.pending[id] {
		k.charge(id, res.g, 1)
	}
}

// Ready is closed once the first load succeeded.
func (k *Keeper) Ready() <-chan struct{} { return k.ready }

// Place decides on the current snapshot, reserving nothing.
func (k *Keeper) Place(r Request) (Decision, error) {
	rnd := k.rand()
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
	k.charge(hostID, g, 1)
}

// Reservation is a decision's share of its host, held on the snapshot
// from the decision until its claim commits or fails (End): the
// replica's other decisions meanwhile see the host with the share taken.
// It is local to the replica; the database still judges the claim.
type Reservation struct {
	k      *Keeper
	hostID string
	g      rackcloud.Guest
	ended  bool
}

// Reserve decides for guest g on the current snapshot, as Place does,
// and reserves the chosen host's share for g on the snapshot until the
// reservation ends. Decisions of one keeper are serialised by it.
func (k *Keeper) Reserve(r Request, g rackcloud.Guest) (Decision, *Reservation, error) {
	rnd := k.rand()
	k.mu.Lock()
	defer k.mu.Unlock()
	d, err := Place(k.snap, r, rnd)
	if err != nil {
		return d, nil, err
	}
	res := &Reservation{k: k, hostID: d.HostID, g: g}
	k.pending[d.HostID] = append(k.pending[d.HostID], res)
	k.charge(d.HostID, g, 1)
	return d, res, nil
}

// End ends the reservation: claimed, the database took the claim and the
// share stays charged until a refresh reads the host's usage with it;
// otherwise the share is given back. Ending twice does nothing.
func (res *Reservation) End(claimed bool) {
	k := res.k
	k.mu.Lock()
	defer k.mu.Unlock()
	if res.ended {
		return
	}
	res.ended = true
	list := k.pending[res.hostID]
	for i, p := range list {
		if p == res {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(k.pending, res.hostID)
	} else {
		k.pending[res.hostID] = list
	}
	if !claimed {
		k.charge(res.hostID, res.g, -1)
	}
}

// charge adds (sign 1) or takes back (-1) g's share of host hostID on a
// copy of the host, which replaces it. k.mu is held.
func (k *Keeper) charge(hostID string, g rackcloud.Guest, sign int) {
	h := k.snap.Host(hostID)
	if h == nil {
		return
	}
	c := *h
	c.Used.CPUCores += sign * g.Flavor.CPUCores
	c.Used.MemoryMiB += int64(sign) * g.Flavor.MemoryMiB
	c.Used.DiskGiB += int64(sign) * g.Flavor.DiskGiB
	c.Guests += sign
	if g.PlacementGroupID != "" {
		c.Groups = make(map[string]int, len(h.Groups)+1)
		for id, n := range h.Groups {
			c.Groups[id] = n
		}
		if c.Groups[g.PlacementGroupID] += sign; c.Groups[g.PlacementGroupID] <= 0 {
			delete(c.Groups, g.PlacementGroupID)
		}
	}
	k.snap.Upsert(&c)
}

// rand is a source for one decision.
func (k *Keeper) rand() *rand.Rand {
	k.rndMu.Lock()
	defer k.rndMu.Unlock()
	return rand.New(rand.NewPCG(k.rnd.Uint64(), k.rnd.Uint64()))
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
