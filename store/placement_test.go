package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/store"
)

// placementFixture makes a project with room for everything, an image,
// and racks r0..r(racks-1) in one zone.
type placementFixture struct {
	pool    *pgxpool.Pool
	project string
	image   string
	zone    string
	racks   []string
}

func newPlacementFixture(t *testing.T, racks int) *placementFixture {
	t.Helper()
	ctx := context.Background()
	f := &placementFixture{pool: pgtest.DB(t)}
	p, err := store.CreateProject(ctx, f.pool, rackcloud.Project{Meta: rackcloud.Meta{Name: "p"}})
	require.NoError(t, err)
	f.project = p.ID
	q, err := store.GetQuota(ctx, f.pool, p.ID)
	require.NoError(t, err)
	_, err = store.SetQuota(ctx, f.pool, p.ID, q.Version, rackcloud.Resources{CPUCores: 1 << 20, MemoryMiB: 1 << 40, DiskGiB: 1 << 30}, 1000)
	require.NoError(t, err)
	im, err := store.CreateImage(ctx, f.pool, rackcloud.Image{Meta: rackcloud.Meta{Name: "img"}, URL: "http://x/img",
		Checksum: "sha256:" + fmt.Sprintf("%064d", 0), Format: rackcloud.FormatQCOW2})
	require.NoError(t, err)
	f.image = im.ID
	reg, err := store.CreateRegion(ctx, f.pool, rackcloud.Region{Meta: rackcloud.Meta{Name: "reg"}})
	require.NoError(t, err)
	z, err := store.CreateZone(ctx, f.pool, rackcloud.Zone{Meta: rackcloud.Meta{Name: "z"}, RegionID: reg.ID})
	require.NoError(t, err)
	f.zone = z.ID
	for i := range racks {
		r, err := store.CreateRack(ctx, f.pool, rackcloud.Rack{Meta: rackcloud.Meta{Name: fmt.Sprintf("r%d", i)}, ZoneID: z.ID, Positions: 42})
		require.NoError(t, err)
		f.racks = append(f.racks, r.ID)
	}
	return f
}

// host makes a ready host of role with cpus and memory (MiB), 100 GiB of
// disk, in rack rack (-1: none).
func (f *placementFixture) host(t *testing.T, name string, role rackcloud.HostRole, cpus int, mem int64, rack int) string {
	t.Helper()
	h := rackcloud.Host{Meta: rackcloud.Meta{Name: name}, Role: role, State: rackcloud.HostReady,
		Resources: rackcloud.Resources{CPUCores: cpus, MemoryMiB: mem, DiskGiB: 100}}
	if rack >= 0 {
		h.RackID = f.racks[rack]
	}
	got, err := store.CreateHost(context.Background(), f.pool, h)
	require.NoError(t, err)
	return got.ID
}

func (f *placementFixture) guest(t *testing.T, name string, kind rackcloud.GuestKind, cpus int, mem int64, group string) string {
	t.Helper()
	g, err := store.CreateGuest(context.Background(), f.pool, rackcloud.Guest{Meta: rackcloud.Meta{Name: name}, ProjectID: f.project,
		Kind: kind, Flavor: rackcloud.Resources{CPUCores: cpus, MemoryMiB: mem, DiskGiB: 1}, ImageID: f.image, PlacementGroupID: group})
	require.NoError(t, err)
	return g.ID
}

func TestClaimHostIsJudgedByTheDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newPlacementFixture(t, 1)
	kvm := f.host(t, "kvm-1", rackcloud.RoleKVM, 4, 4096, 0)
	docker := f.host(t, "docker-1", rackcloud.RoleDocker, 4, 4096, 0)
	bm := f.host(t, "bm-1", rackcloud.RoleBareMetal, 8, 8192, 0)

	a := f.guest(t, "a", rackcloud.GuestVM, 2, 2048, "")
	g, err := store.ClaimHost(ctx, f.pool, a, kvm, "placed on kvm-1")
	require.NoError(t, err)
	require.Equal(t, kvm, g.HostID)
	require.Equal(t, "placed on kvm-1", g.Placement)
	again, err := store.ClaimHost(ctx, f.pool, a, kvm, "again")
	require.NoError(t, err, "a step run again finds its claim")
	require.Equal(t, g.Version, again.Version)
	_, err = store.ClaimHost(ctx, f.pool, a, docker, "")
	require.ErrorIs(t, err, rackcloud.ErrConflict, "a guest on a host is not claimed twice")

	h, err := store.GetHost(ctx, f.pool, kvm)
	require.NoError(t, err)
	require.Equal(t, rackcloud.Resources{CPUCores: 2, MemoryMiB: 2048, DiskGiB: 1}, h.Used)

	b := f.guest(t, "b", rackcloud.GuestVM, 3, 1024, "")
	_, err = store.ClaimHost(ctx, f.pool, b, kvm, "")
	require.ErrorIs(t, err, store.ErrHostFull, "2+3 vcpu on 4")
	require.ErrorIs(t, err, rackcloud.ErrConflict)
	_, err = store.ClaimHost(ctx, f.pool, b, docker, "")
	require.ErrorIs(t, err, store.ErrHostUnavailable, "a vm on a docker host")

	// Overhead and overcommit change what a host can sell.
	_, err = f.pool.Exec(ctx, `UPDATE hosts SET overcommit_cpu = 2 WHERE id = $1`, kvm)
	require.NoError(t, err)
	_, err = store.ClaimHost(ctx, f.pool, b, kvm, "")
	require.NoError(t, err, "4 vcpu x 2 holds 5")
	c := f.guest(t, "c", rackcloud.GuestVM, 1, 1024, "")
	_, err = f.pool.Exec(ctx, `UPDATE hosts SET overhead_memory_mib = 1024 WHERE id = $1`, kvm)
	require.NoError(t, err)
	_, err = store.ClaimHost(ctx, f.pool, c, kvm, "")
	require.ErrorIs(t, err, store.ErrHostFull, "3072 used of 4096-1024")

	// Maintenance keeps new guests off.
	_, err = f.pool.Exec(ctx, `UPDATE hosts SET overhead_memory_mib = 0, maintenance = true WHERE id = $1`, kvm)
	require.NoError(t, err)
	_, err = store.ClaimHost(ctx, f.pool, c, kvm, "")
	require.ErrorIs(t, err, store.ErrHostUnavailable)

	// A bare-metal host takes one guest.
	m1 := f.guest(t, "m1", rackcloud.GuestBareMetal, 0, 0, "")
	m2 := f.guest(t, "m2", rackcloud.GuestBareMetal, 0, 0, "")
	_, err = store.ClaimHost(ctx, f.pool, m1, bm, "")
	require.NoError(t, err)
	_, err = store.ClaimHost(ctx, f.pool, m2, bm, "")
	require.ErrorIs(t, err, store.ErrHostFull)

	// Release and delete give the resources back.
	require.NoError(t, store.ReleaseHost(ctx, f.pool, a))
	require.NoError(t, store.ReleaseHost(ctx, f.pool, a), "twice")
	gb, err := store.GetGuest(ctx, f.pool, b)
	require.NoError(t, err)
	require.NoError(t, store.DeleteGuest(ctx, f.pool, b, gb.Version))
	h, err = store.GetHost(ctx, f.pool, kvm)
	require.NoError(t, err)
	require.Equal(t, rackcloud.Resources{}, h.Used)
	over, err := store.OverbookedHosts(ctx, f.pool)
	require.NoError(t, err)
	require.Empty(t, over)

	ph, err := store.PlacementHosts(ctx, f.pool, nil)
	require.NoError(t, err)
	require.Len(t, ph, 3)
	for _, p := range ph {
		if p.ID == bm {
			require.Equal(t, 1, p.MaxGuests)
			require.Equal(t, 1, p.Guests)
			require.Equal(t, "r0", p.RackName)
			require.Equal(t, f.zone, p.ZoneID)
		}
		if p.ID == kvm {
			require.Equal(t, 2.0, p.Ratio.CPU)
			require.Equal(t, 8, p.Capacity.CPUCores)
		}
	}
}

func TestHardAntiAffinityIsJudgedByTheDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newPlacementFixture(t, 2)
	hosts := []string{
		f.host(t, "h0", rackcloud.RoleDocker, 8, 8192, 0),
		f.host(t, "h1", rackcloud.RoleDocker, 8, 8192, 0),
		f.host(t, "h2", rackcloud.RoleDocker, 8, 8192, 1),
	}
	pg, err := store.CreatePlacementGroup(ctx, f.pool, rackcloud.PlacementGroup{Meta: rackcloud.Meta{Name: "spread"},
		ProjectID: f.project, Policy: rackcloud.AntiAffinity, Hard: true, Scope: rackcloud.ScopeRack})
	require.NoError(t, err)
	g1 := f.guest(t, "g1", rackcloud.GuestContainer, 1, 128, pg.ID)
	g2 := f.guest(t, "g2", rackcloud.GuestContainer, 1, 128, pg.ID)
	_, err = store.ClaimHost(ctx, f.pool, g1, hosts[0], "")
	require.NoError(t, err)
	_, err = store.ClaimHost(ctx, f.pool, g2, hosts[1], "")
	require.ErrorIs(t, err, store.ErrPlacementGroup, "same rack")
	require.ErrorContains(t, err, "already has 1 guest(s) in this rack")
	_, err = store.ClaimHost(ctx, f.pool, g2, hosts[2], "")
	require.NoError(t, err)

	ph, err := store.PlacementHosts(ctx, f.pool, []string{hosts[0]})
	require.NoError(t, err)
	require.Len(t, ph, 1)
	require.Equal(t, map[string]int{pg.ID: 1}, ph[0].Groups)
}

// Many claims at once on one small host: exactly as many as fit win, the
// others get ErrHostFull, and the usage row matches the guests.
func TestConcurrentClaimsNeverOverbook(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newPlacementFixture(t, 1)
	h := f.host(t, "tight", rackcloud.RoleDocker, 5, 5*512, 0)
	pg, err := store.CreatePlacementGroup(ctx, f.pool, rackcloud.PlacementGroup{Meta: rackcloud.Meta{Name: "two"},
		ProjectID: f.project, Policy: rackcloud.AntiAffinity, Hard: true, Scope: rackcloud.ScopeHost, MaxPerScope: 2})
	require.NoError(t, err)
	var guests, grouped []string
	for i := range 20 {
		guests = append(guests, f.guest(t, fmt.Sprintf("g%d", i), rackcloud.GuestContainer, 1, 512, ""))
	}
	other := f.host(t, "roomy", rackcloud.RoleDocker, 64, 65536, 0)
	for i := range 6 {
		grouped = append(grouped, f.guest(t, fmt.Sprintf("pg%d", i), rackcloud.GuestContainer, 1, 64, pg.ID))
	}
	var mu sync.Mutex
	won, full, group := 0, 0, 0
	var wg sync.WaitGroup
	claim := func(id, host string) {
		defer wg.Done()
		_, err := store.ClaimHost(ctx, f.pool, id, host, "")
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			won++
		case errors.Is(err, store.ErrHostFull):
			full++
		case errors.Is(err, store.ErrPlacementGroup):
			group++
		default:
			t.Errorf("claim %s: %v", id, err)
		}
	}
	for _, g := range guests {
		wg.Add(1)
		go claim(g, h)
	}
	for _, g := range grouped {
		wg.Add(1)
		go claim(g, other)
	}
	wg.Wait()
	require.Equal(t, 5+2, won, "5 fit the tight host, 2 of the group on the roomy one")
	require.Equal(t, 15, full)
	require.Equal(t, 4, group)
	over, err := store.OverbookedHosts(ctx, f.pool)
	require.NoError(t, err)
	require.Empty(t, over)
}
