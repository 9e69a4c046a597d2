package vmctl

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
)

// host is a ready host of role in zone and rack with 16 cores, 64 GiB and
// 1000 GiB of which 2 cores, 4 GiB and 100 GiB are overhead.
func host(id string, role rackcloud.HostRole, zone, rack string, labels ...string) *HostInfo {
	h := &HostInfo{ID: id, Name: "name-" + id, ZoneID: zone, ZoneName: "zone " + zone, RackID: rack, Role: role,
		State: rackcloud.HostReady, Labels: map[string]string{},
		Total:    rackcloud.Resources{CPUCores: 16, MemoryMiB: 65536, DiskGiB: 1000},
		Overhead: rackcloud.Resources{CPUCores: 2, MemoryMiB: 4096, DiskGiB: 100},
	}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		h.Labels[k] = v
	}
	return h
}

func with(h *HostInfo, f func(*HostInfo)) *HostInfo { f(h); return h }

func flavor(cpu int, mem, disk int64) rackcloud.Resources {
	return rackcloud.Resources{CPUCores: cpu, MemoryMiB: mem, DiskGiB: disk}
}

// apply places a guest of r on the host the way a committed claim does.
func apply(s *Snapshot, id string, r Request) {
	h := *s.Host(id)
	h.Used.CPUCores += r.Flavor.CPUCores
	h.Used.MemoryMiB += r.Flavor.MemoryMiB
	h.Used.DiskGiB += r.Flavor.DiskGiB
	h.Guests++
	h.Groups = maps.Clone(h.Groups)
	if r.Group != nil {
		if h.Groups == nil {
			h.Groups = map[string]int{}
		}
		h.Groups[r.Group.ID]++
	}
	s.Upsert(&h)
}

func seeded() *rand.Rand { return rand.New(rand.NewPCG(1, 2)) }

func noFit(t *testing.T, err error) Explanation {
	t.Helper()
	require.ErrorIs(t, err, ErrNoFit)
	var nf *NoFitError
	require.True(t, errors.As(err, &nf))
	require.Equal(t, nf.Explanation.Summary, err.Error())
	return nf.Explanation
}

// removed lists the filters that removed hosts, as name=count.
func removed(e Explanation) []string {
	var out []string
	for _, f := range e.Filters {
		if f.Removed > 0 {
			s := fmt.Sprintf("%s=%d", f.Name, f.Removed)
			if f.Closest != "" {
				s += " (" + f.Closest + ")"
			}
			out = append(out, s)
		}
	}
	return out
}

func TestPlaceFilters(t *testing.T) {
	vm := func(f func(*Request)) Request {
		r := Request{GuestID: "g", Kind: rackcloud.GuestVM, Flavor: flavor(2, 2048, 10)}
		if f != nil {
			f(&r)
		}
		return r
	}
	kvm := rackcloud.RoleKVM
	for name, tc := range map[string]struct {
		hosts   []*HostInfo
		req     Request
		want    string // the summary
		removed []string
	}{
		"role": {
			hosts:   []*HostInfo{host("d1", rackcloud.RoleDocker, "a", "r1"), host("b1", rackcloud.RoleBareMetal, "a", "r1")},
			req:     vm(nil),
			want:    "no host fits: no kvm hosts (of 2 hosts)",
			removed: []string{"role=2"},
		},
		"zone": {
			hosts:   []*HostInfo{host("h1", kvm, "a", "r1"), host("h2", kvm, "b", "r2"), host("d1", rackcloud.RoleDocker, "a", "r1")},
			req:     vm(func(r *Request) { r.ZoneID = "c" }),
			want:    "no host fits: no kvm hosts in zone c (of 3 hosts)",
			removed: []string{"role=1", "zone=2"},
		},
		"state and maintenance": {
			hosts: []*HostInfo{
				with(host("h1", kvm, "a", "r1"), func(h *HostInfo) { h.State = rackcloud.HostProvisioning }),
				with(host("h2", kvm, "a", "r1"), func(h *HostInfo) { h.State = rackcloud.HostDraining }),
				with(host("h3", kvm, "a", "r1"), func(h *HostInfo) { h.Maintenance = true }),
				host("h4", kvm, "b", "r2"),
			},
			req:     vm(func(r *Request) { r.ZoneID = "a" }),
			want:    "no host fits: 3 kvm hosts in zone a; 2 not ready; 1 in maintenance",
			removed: []string{"zone=1", "state=2", "maintenance=1"},
		},
		"rack": {
			hosts:   []*HostInfo{host("h1", kvm, "a", "r1"), host("h2", kvm, "a", "r2")},
			req:     vm(func(r *Request) { r.RackID = "r3" }),
			want:    "no host fits: 2 kvm hosts; 2 not in rack r3",
			removed: []string{"rack=2"},
		},
		"labels": {
			hosts: []*HostInfo{
				host("h1", kvm, "a", "r1"), host("h2", kvm, "a", "r1", "ssd", "spot"),
				host("h3", kvm, "a", "r1", "ssd", "tier=web"), host("h4", kvm, "a", "r1", "ssd", "tier=db", "gpu=a100"),
			},
			req: vm(func(r *Request) {
				r.Constraints = MustParseLabelExprs("ssd", "!spot", "tier in (db)", "gpu notin (a100,h100)")
			}),
			want:    "no host fits: 4 kvm hosts; 1 lacked label ssd; 1 did not match !spot; 1 did not match tier in (db); 1 did not match gpu notin (a100,h100)",
			removed: []string{"label ssd=1", "label !spot=1", "label tier in (db)=1", "label gpu notin (a100,h100)=1"},
		},
		"the issue's example": {
			hosts: func() []*HostInfo {
				var hs []*HostInfo
				for i := range 12 {
					h := host(fmt.Sprint("h", i), kvm, "a", "r1")
					if i >= 9 {
						h.Labels["ssd"] = ""
						h.Used.MemoryMiB = 61440 - 1536 + int64(i-9)*-100 // 1536 free at best
					}
					hs = append(hs, h)
				}
				return hs
			}(),
			req:     vm(func(r *Request) { r.ZoneID = "a"; r.Constraints = MustParseLabelExprs("ssd") }),
			want:    "no host fits: 12 kvm hosts in zone a; 9 lacked label ssd; 3 lacked 2048 MiB memory after overhead (best had 1736)",
			removed: []string{"label ssd=9", "memory=3 (best had 1736)"},
		},
		"cpu, memory, disk": {
			hosts: []*HostInfo{
				with(host("h1", kvm, "a", "r1"), func(h *HostInfo) { h.Used.CPUCores = 13 }),
				with(host("h2", kvm, "a", "r1"), func(h *HostInfo) { h.Used.CPUCores = 14 }),
				with(host("h3", kvm, "a", "r1"), func(h *HostInfo) { h.Used.MemoryMiB = 60000 }),
				with(host("h4", kvm, "a", "r1"), func(h *HostInfo) { h.Used.DiskGiB = 895 }),
			},
			req:     vm(nil),
			want:    "no host fits: 4 kvm hosts; 2 lacked 2 CPU cores after overhead (best had 1); 1 lacked 2048 MiB memory after overhead (best had 1440); 1 lacked 10 GiB disk after overhead (best had 5)",
			removed: []string{"cpu=2 (best had 1)", "memory=1 (best had 1440)", "disk=1 (best had 5)"},
		},
		"guest limit": {
			hosts: []*HostInfo{
				with(host("h1", kvm, "a", "r1"), func(h *HostInfo) { h.MaxGuests, h.Guests = 2, 2 }),
				with(host("b1", rackcloud.RoleBareMetal, "a", "r1"), func(h *HostInfo) { h.Guests = 1 }),
			},
			req:     vm(nil),
			want:    "no host fits: 1 kvm hosts; 1 at their guest limit",
			removed: []string{"role=1", "guests=1"},
		},
		"bare metal takes one guest": {
			hosts:   []*HostInfo{with(host("b1", rackcloud.RoleBareMetal, "a", "r1"), func(h *HostInfo) { h.Guests = 1 })},
			req:     Request{Kind: rackcloud.GuestBareMetal},
			want:    "no host fits: 1 bm hosts; 1 at their guest limit",
			removed: []string{"guests=1"},
		},
		"exclude": {
			hosts:   []*HostInfo{host("h1", kvm, "a", "r1"), host("h2", kvm, "a", "r1")},
			req:     vm(func(r *Request) { r.Exclude = map[string]bool{"h1": true, "h2": true} }),
			want:    "no host fits: 2 kvm hosts; 2 already tried",
			removed: []string{"exclude=2"},
		},
		"exact host not ready": {
			hosts:   []*HostInfo{host("h1", kvm, "a", "r1"), with(host("h2", kvm, "a", "r1"), func(h *HostInfo) { h.State = rackcloud.HostFailed })},
			req:     vm(func(r *Request) { r.HostID = "h2" }),
			want:    "no host fits: host h2 is failed, not ready",
			removed: []string{"state=1"},
		},
		"exact host wrong role": {
			hosts:   []*HostInfo{host("d1", rackcloud.RoleDocker, "a", "r1")},
			req:     vm(func(r *Request) { r.HostID = "d1" }),
			want:    "no host fits: host d1 is a docker host, not kvm",
			removed: []string{"role=1"},
		},
		"exact host lacks memory": {
			hosts:   []*HostInfo{with(host("h1", kvm, "a", "r1"), func(h *HostInfo) { h.Used.MemoryMiB = 61440 - 1536 })},
			req:     vm(func(r *Request) { r.HostID = "h1" }),
			want:    "no host fits: host h1 lacks 2048 MiB memory after overhead (has 1536)",
			removed: []string{"memory=1 (best had 1536)"},
		},
		"exact host lacks a label": {
			hosts:   []*HostInfo{host("h1", kvm, "a", "r1")},
			req:     vm(func(r *Request) { r.HostID = "h1"; r.Constraints = MustParseLabelExprs("ssd") }),
			want:    "no host fits: host h1 lacks label ssd",
			removed: []string{"label ssd=1"},
		},
		"exact host in another zone": {
			hosts:   []*HostInfo{host("h1", kvm, "b", "r1")},
			req:     vm(func(r *Request) { r.HostID = "h1"; r.ZoneID = "a" }),
			want:    "no host fits: host h1 is in zone b, not a",
			removed: []string{"zone=1"},
		},
		"exact host unknown": {
			hosts: []*HostInfo{host("h1", kvm, "a", "r1")},
			req:   vm(func(r *Request) { r.HostID = "nope" }),
			want:  "no host fits: host nope is not in the snapshot",
		},
		"exact host anti-affinity": {
			hosts: []*HostInfo{with(host("h1", kvm, "a", "r1"), func(h *HostInfo) { h.Groups = map[string]int{"db": 1} })},
			req: vm(func(r *Request) {
				r.HostID = "h1"
				r.Group = &Group{ID: "db", Policy: rackcloud.AntiAffinity, Hard: true, Scope: rackcloud.ScopeRack}
			}),
			want:    "no host fits: host h1 is in rack r1, where group db already has 1 guest",
			removed: []string{"group=1"},
		},
		"hard affinity": {
			hosts: []*HostInfo{
				with(host("h1", kvm, "a", "r1"), func(h *HostInfo) { h.Groups = map[string]int{"web": 1}; h.Used.CPUCores = 14 }),
				host("h2", kvm, "a", "r2"), host("h3", kvm, "a", "r3"), host("d1", rackcloud.RoleDocker, "a", "r1"),
			},
			req: vm(func(r *Request) {
				r.Group = &Group{ID: "web", Policy: rackcloud.Affinity, Hard: true, Scope: rackcloud.ScopeRack}
			}),
			want:    "no host fits: 3 kvm hosts; 1 lacked 2 CPU cores after overhead (best had 0); 2 outside the rack of group web (r1)",
			removed: []string{"role=1", "cpu=1 (best had 0)", "group=2"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Place(NewSnapshot(tc.hosts), tc.req, seeded())
			e := noFit(t, err)
			require.Equal(t, tc.want, e.Summary)
			if d := cmp.Diff(tc.removed, removed(e)); d != "" {
				t.Errorf("removed (-want +got):\n%s", d)
			}
			sum := 0
			for _, f := range e.Filters {
				sum += f.Removed
			}
			require.Equal(t, e.Considered, sum, "every considered host is accounted for")
		})
	}
}

func TestPlaceExactHost(t *testing.T) {
	s := NewSnapshot([]*HostInfo{host("h1", rackcloud.RoleKVM, "a", "r1"), host("h2", rackcloud.RoleKVM, "a", "r1")})
	for range 20 {
		d, err := Place(s, Request{Kind: rackcloud.GuestVM, Flavor: flavor(1, 1024, 10), HostID: "h2"}, seeded())
		require.NoError(t, err)
		require.Equal(t, "h2", d.HostID)
		require.Equal(t, 1, d.Explanation.Considered)
		require.Contains(t, d.Explanation.Summary, "placed on h2 (name-h2) as asked")
	}
}

func TestPlaceBinpackVsSpread(t *testing.T) {
	hosts := []*HostInfo{}
	for i, used := range []int{0, 4, 8, 12} {
		hosts = append(hosts, with(host(fmt.Sprint("h", i), rackcloud.RoleKVM, "a", "r1"), func(h *HostInfo) {
			h.Used = flavor(used, int64(used)*4096, 0)
		}))
	}
	s := NewSnapshot(hosts)
	for name, tc := range map[string]struct {
		strategy Strategy
		want     string
	}{
		"default is binpack": {"", "h3"},
		"binpack":            {Binpack, "h3"},
		"spread":             {Spread, "h0"},
	} {
		t.Run(name, func(t *testing.T) {
			d, err := PlaceConfig{TopK: 1}.Place(s, Request{Kind: rackcloud.GuestVM, Flavor: flavor(1, 1024, 1), Strategy: tc.strategy}, seeded())
			require.NoError(t, err)
			require.Equal(t, tc.want, d.HostID)
			require.Equal(t, 4, d.Feasible)
		})
	}
}

func TestFitScore(t *testing.T) {
	h := host("h", rackcloud.RoleKVM, "a", "r")
	empty := FitScore(h, flavor(0, 0, 0), Binpack)
	full := FitScore(h, flavor(14, 61440, 0), Binpack)
	require.InDelta(t, 0, empty, 1e-9)
	require.InDelta(t, 1, full, 1e-9)
	require.InDelta(t, 1, FitScore(h, flavor(0, 0, 0), Spread), 1e-9)
	require.InDelta(t, 0, FitScore(h, flavor(14, 61440, 0), Spread), 1e-9)
	half := FitScore(h, flavor(7, 30720, 0), Binpack)
	require.Greater(t, half, empty)
	require.Less(t, half, full)
}

func TestPlaceTopKRandom(t *testing.T) {
	var hosts []*HostInfo
	for i := range 10 {
		hosts = append(hosts, with(host(fmt.Sprint("h", i), rackcloud.RoleKVM, "a", "r1"), func(h *HostInfo) { h.Used.CPUCores = i }))
	}
	s := NewSnapshot(hosts)
	rnd := seeded()
	got := map[string]int{}
	for range 300 {
		d, err := Place(s, Request{Kind: rackcloud.GuestVM, Flavor: flavor(1, 0, 0)}, rnd)
		require.NoError(t, err)
		got[d.HostID]++
	}
	// The three fullest hosts, each about a third of the time.
	require.ElementsMatch(t, []string{"h9", "h8", "h7"}, slices.Collect(maps.Keys(got)))
	for id, n := range got {
		require.Greater(t, n, 60, id)
	}
}

func TestPlaceOvercommit(t *testing.T) {
	h := with(host("h1", rackcloud.RoleKVM, "a", "r1"), func(h *HostInfo) {
		h.Ratio = Overcommit{CPU: 4, Memory: 1.5}
		h.Used = flavor(50, 90000, 0)
	})
	// (16-2)*4 = 56 cores, floor((65536-4096)*1.5) = 92160 MiB, disk 900.
	require.Equal(t, flavor(56, 92160, 900), h.Capacity())
	require.Equal(t, flavor(6, 2160, 900), h.Free())
	s := NewSnapshot([]*HostInfo{h})
	_, err := Place(s, Request{Kind: rackcloud.GuestVM, Flavor: flavor(6, 2048, 100)}, seeded())
	require.NoError(t, err)
	_, err = Place(s, Request{Kind: rackcloud.GuestVM, Flavor: flavor(7, 2048, 100)}, seeded())
	require.Equal(t, "no host fits: 1 kvm hosts; 1 lacked 7 CPU cores after overhead (best had 6)", noFit(t, err).Summary)
}

func TestPlaceExclude(t *testing.T) {
	s := NewSnapshot([]*HostInfo{host("h1", rackcloud.RoleKVM, "a", "r1"), host("h2", rackcloud.RoleKVM, "a", "r1")})
	for range 20 {
		d, err := Place(s, Request{Kind: rackcloud.GuestVM, Exclude: map[string]bool{"h1": true}}, rand.New(rand.NewPCG(rand.Uint64(), 0)))
		require.NoError(t, err)
		require.Equal(t, "h2", d.HostID)
		require.Equal(t, []string{"exclude=1"}, removed(d.Explanation))
	}
}

// threeRacks has two kvm hosts in each of racks r1, r2 and r3.
func threeRacks() *Snapshot {
	var hosts []*HostInfo
	for r := 1; r <= 3; r++ {
		for i := range 2 {
			hosts = append(hosts, host(fmt.Sprintf("h%d%d", r, i), rackcloud.RoleKVM, "a", fmt.Sprint("r", r)))
		}
	}
	return NewSnapshot(hosts)
}

func TestPlaceRackAntiAffinity(t *testing.T) {
	for name, tc := range map[string]struct {
		hard     bool
		wantSoft []string
	}{
		"hard": {hard: true},
		"soft": {wantSoft: []string{"soft anti-affinity: group db already has 1 guest in rack r"}},
	} {
		t.Run(name, func(t *testing.T) {
			s := threeRacks()
			g := &Group{ID: "db", Policy: rackcloud.AntiAffinity, Hard: tc.hard, Scope: rackcloud.ScopeRack}
			racks := map[string]bool{}
			rnd := seeded()
			for i := range 3 {
				r := Request{GuestID: fmt.Sprint("g", i), Kind: rackcloud.GuestVM, Flavor: flavor(1, 1024, 10), Group: g}
				d, err := Place(s, r, rnd)
				require.NoError(t, err)
				require.Empty(t, d.Soft)
				racks[s.Host(d.HostID).RackID] = true
				apply(s, d.HostID, r)
			}
			require.Len(t, racks, 3, "one guest per rack")
			r := Request{GuestID: "g3", Kind: rackcloud.GuestVM, Flavor: flavor(1, 1024, 10), Group: g}
			d, err := Place(s, r, rnd)
			if tc.hard {
				e := noFit(t, err)
				require.Equal(t, "no host fits: 6 kvm hosts; group db already has 1 guest in every rack left (3 racks)", e.Summary)
				require.Equal(t, []string{"group=6"}, removed(e))
				return
			}
			require.NoError(t, err)
			require.Len(t, d.Soft, 1)
			require.Equal(t, tc.wantSoft[0]+s.Host(d.HostID).RackID[1:], d.Soft[0])
		})
	}
}

func TestPlaceAntiAffinityMaxPerScope(t *testing.T) {
	s := threeRacks()
	g := &Group{ID: "db", Policy: rackcloud.AntiAffinity, Hard: true, Scope: rackcloud.ScopeRack, MaxPerScope: 2}
	perRack := map[string]int{}
	rnd := seeded()
	for i := range 6 {
		r := Request{GuestID: fmt.Sprint("g", i), Kind: rackcloud.GuestVM, Flavor: flavor(1, 1024, 10), Group: g}
		d, err := Place(s, r, rnd)
		require.NoError(t, err)
		perRack[s.Host(d.HostID).RackID]++
		apply(s, d.HostID, r)
	}
	require.Equal(t, map[string]int{"r1": 2, "r2": 2, "r3": 2}, perRack)
	_, err := Place(s, Request{Kind: rackcloud.GuestVM, Group: g}, rnd)
	require.Equal(t, "no host fits: 6 kvm hosts; group db already has 2 guests in every rack left (3 racks)", noFit(t, err).Summary)
}

func TestPlaceHostAntiAffinitySpreadsRacks(t *testing.T) {
	// Host anti-affinity with one guest in r1: rack spread prefers r2, r3.
	s := threeRacks()
	g := &Group{ID: "web", Policy: rackcloud.AntiAffinity, Hard: true, Scope: rackcloud.ScopeHost}
	apply(s, "h10", Request{Group: g})
	for range 20 {
		d, err := Place(s, Request{Kind: rackcloud.GuestVM, Group: g}, rand.New(rand.NewPCG(rand.Uint64(), 0)))
		require.NoError(t, err)
		require.NotEqual(t, "r1", s.Host(d.HostID).RackID)
	}
}

func TestPlaceAffinity(t *testing.T) {
	for name, hard := range map[string]bool{"hard": true, "soft": false} {
		t.Run(name, func(t *testing.T) {
			s := threeRacks()
			g := &Group{ID: "web", Policy: rackcloud.Affinity, Hard: hard, Scope: rackcloud.ScopeRack}
			apply(s, "h20", Request{Group: g})
			for range 20 {
				d, err := Place(s, Request{Kind: rackcloud.GuestVM, Flavor: flavor(1, 1, 1), Group: g}, rand.New(rand.NewPCG(rand.Uint64(), 0)))
				require.NoError(t, err)
				require.Equal(t, "r2", s.Host(d.HostID).RackID)
				require.Empty(t, d.Soft)
			}
			// Rack r2 full: hard refuses, soft goes elsewhere and says so.
			for _, id := range []string{"h20", "h21"} {
				apply(s, id, Request{Flavor: flavor(14, 0, 0)})
			}
			d, err := Place(s, Request{Kind: rackcloud.GuestVM, Flavor: flavor(1, 1, 1), Group: g}, seeded())
			if hard {
				require.Equal(t, "no host fits: 6 kvm hosts; 2 lacked 1 CPU cores after overhead (best had 0); 4 outside the rack of group web (r2)", noFit(t, err).Summary)
				return
			}
			require.NoError(t, err)
			rack := s.Host(d.HostID).RackID
			require.NotEqual(t, "r2", rack)
			require.Equal(t, []string{"soft affinity: group web has no guest in rack " + rack + " (it is in r2)"}, d.Soft)
		})
	}
}

func TestPlaceInvalid(t *testing.T) {
	s := threeRacks()
	for name, r := range map[string]Request{
		"kind":     {Kind: "unikernel"},
		"flavor":   {Kind: rackcloud.GuestVM, Flavor: flavor(-1, 0, 0)},
		"strategy": {Kind: rackcloud.GuestVM, Strategy: "random"},
		"group id": {Kind: rackcloud.GuestVM, Group: &Group{Policy: rackcloud.Affinity, Scope: rackcloud.ScopeHost}},
		"policy":   {Kind: rackcloud.GuestVM, Group: &Group{ID: "g", Policy: "near", Scope: rackcloud.ScopeHost}},
		"scope":    {Kind: rackcloud.GuestVM, Group: &Group{ID: "g", Policy: rackcloud.Affinity, Scope: "region"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Place(s, r, seeded())
			require.ErrorIs(t, err, rackcloud.ErrInvalid)
		})
	}
	_, err := Place(nil, Request{Kind: rackcloud.GuestVM}, nil)
	require.ErrorIs(t, err, rackcloud.ErrInvalid)
}

func TestSnapshotUpsertRemove(t *testing.T) {
	s := NewSnapshot([]*HostInfo{host("h1", rackcloud.RoleKVM, "a", "r1"), host("h2", rackcloud.RoleKVM, "a", "r1")})
	moved := with(host("h1", rackcloud.RoleDocker, "b", "r9"), func(h *HostInfo) { h.Groups = map[string]int{"g": 1} })
	s.Upsert(moved)
	require.Same(t, moved, s.Host("h1"))
	require.Len(t, s.Hosts, 2)
	require.Equal(t, 1, s.byRole[rackcloud.RoleKVM].len())
	require.Equal(t, 1, s.byZone[roleZone{rackcloud.RoleDocker, "b"}].len())
	_, inOldRack := s.byRack["r1"].at["h1"]
	require.False(t, inOldRack)
	require.Equal(t, 1, s.groups["g"].len())
	s.Upsert(host("h1", rackcloud.RoleDocker, "b", "r9"))
	require.Nil(t, s.groups["g"], "group index follows the host's Groups")
	s.Remove("h1")
	s.Remove("nope")
	require.Nil(t, s.Host("h1"))
	require.Len(t, s.Hosts, 1)
	require.Nil(t, s.byRole[rackcloud.RoleDocker])
	require.Equal(t, "h2", s.Hosts[0].ID)
	require.Equal(t, 0, s.byRack["r1"].at["h2"])
}

// naiveFits is the reference: whether h passes every hard filter of r,
// written plainly from the Request's contract, with the group's counts
// taken from every host.
func naiveFits(s *Snapshot, r Request, h *HostInfo) bool {
	role := map[rackcloud.GuestKind]rackcloud.HostRole{
		rackcloud.GuestVM: rackcloud.RoleKVM, rackcloud.GuestContainer: rackcloud.RoleDocker, rackcloud.GuestBareMetal: rackcloud.RoleBareMetal,
	}[r.Kind]
	if h.Role != role || r.ZoneID != "" && h.ZoneID != r.ZoneID || r.RackID != "" && h.RackID != r.RackID ||
		r.HostID != "" && h.ID != r.HostID || r.Exclude[h.ID] || h.State != rackcloud.HostReady || h.Maintenance {
		return false
	}
	for _, e := range r.Constraints {
		if !e.Match(h.Labels) {
			return false
		}
	}
	sell := func(total, overhead int64, ratio float64) int64 {
		if ratio == 0 {
			ratio = 1
		}
		return max(0, int64(float64(total-overhead)*ratio))
	}
	if sell(int64(h.Total.CPUCores), int64(h.Overhead.CPUCores), h.Ratio.CPU)-int64(h.Used.CPUCores) < int64(r.Flavor.CPUCores) ||
		sell(h.Total.MemoryMiB, h.Overhead.MemoryMiB, h.Ratio.Memory)-h.Used.MemoryMiB < r.Flavor.MemoryMiB ||
		sell(h.Total.DiskGiB, h.Overhead.DiskGiB, h.Ratio.Disk)-h.Used.DiskGiB < r.Flavor.DiskGiB {
		return false
	}
	if h.Role == rackcloud.RoleBareMetal && h.Guests >= 1 || h.MaxGuests > 0 && h.Guests >= h.MaxGuests {
		return false
	}
	if g := r.Group; g != nil && g.Hard {
		return naiveKeeps(s, g, h)
	}
	return true
}

func naiveKeeps(s *Snapshot, g *Group, h *HostInfo) bool {
	same := func(o *HostInfo) bool {
		switch g.Scope {
		case rackcloud.ScopeRack:
			return o.RackID == h.RackID
		case rackcloud.ScopeZone:
			return o.ZoneID == h.ZoneID
		}
		return o.ID == h.ID
	}
	here, total := 0, 0
	for _, o := range s.Hosts {
		total += o.Groups[g.ID]
		if same(o) {
			here += o.Groups[g.ID]
		}
	}
	if g.Policy == rackcloud.AntiAffinity {
		return here < max(1, g.MaxPerScope)
	}
	return total == 0 || here > 0
}

func randomSnapshot(rnd *rand.Rand) *Snapshot {
	roles := []rackcloud.HostRole{rackcloud.RoleKVM, rackcloud.RoleKVM, rackcloud.RoleDocker, rackcloud.RoleBareMetal}
	states := []rackcloud.HostState{rackcloud.HostReady, rackcloud.HostReady, rackcloud.HostReady, rackcloud.HostDraining}
	var hosts []*HostInfo
	for i := range 1 + rnd.IntN(60) {
		rack := rnd.IntN(6)
		h := host(fmt.Sprint("h", i), roles[rnd.IntN(len(roles))], string(rune('a'+rack/2)), fmt.Sprint("r", rack))
		h.State, h.Maintenance = states[rnd.IntN(len(states))], rnd.IntN(10) == 0
		if rnd.IntN(2) == 0 {
			h.Labels["ssd"] = ""
		}
		h.Labels["tier"] = []string{"db", "web"}[rnd.IntN(2)]
		h.Ratio = Overcommit{CPU: []float64{0, 1, 2, 4}[rnd.IntN(4)], Memory: []float64{0, 1, 1.5}[rnd.IntN(3)]}
		h.Used = flavor(rnd.IntN(30), rnd.Int64N(70000), rnd.Int64N(900))
		h.Guests = rnd.IntN(4)
		h.MaxGuests = rnd.IntN(5)
		if n := rnd.IntN(3); n > 0 {
			h.Groups = map[string]int{"g": n}
		}
		hosts = append(hosts, h)
	}
	return NewSnapshot(hosts)
}

func randomRequest(rnd *rand.Rand, s *Snapshot) Request {
	kinds := []rackcloud.GuestKind{rackcloud.GuestVM, rackcloud.GuestVM, rackcloud.GuestContainer, rackcloud.GuestBareMetal}
	r := Request{Kind: kinds[rnd.IntN(len(kinds))], Flavor: flavor(rnd.IntN(8), rnd.Int64N(16384), rnd.Int64N(200)),
		Strategy: []Strategy{"", Binpack, Spread}[rnd.IntN(3)]}
	if rnd.IntN(3) == 0 {
		r.ZoneID = string(rune('a' + rnd.IntN(4)))
	}
	if rnd.IntN(6) == 0 {
		r.RackID = fmt.Sprint("r", rnd.IntN(6))
	}
	if rnd.IntN(6) == 0 {
		r.HostID = s.Hosts[rnd.IntN(len(s.Hosts))].ID
	}
	exprs := []string{"ssd", "!ssd", "tier=db", "tier!=db", "tier in (db,web)", "tier notin (web)", "gpu"}
	for range rnd.IntN(3) {
		r.Constraints = append(r.Constraints, MustParseLabelExprs(exprs[rnd.IntN(len(exprs))])...)
	}
	if rnd.IntN(2) == 0 {
		r.Group = &Group{ID: "g", Policy: []rackcloud.PlacementPolicy{rackcloud.Affinity, rackcloud.AntiAffinity}[rnd.IntN(2)],
			Hard: rnd.IntN(2) == 0, Scope: []rackcloud.PlacementScope{rackcloud.ScopeHost, rackcloud.ScopeRack, rackcloud.ScopeZone}[rnd.IntN(3)],
			MaxPerScope: rnd.IntN(4)}
	}
	if rnd.IntN(4) == 0 {
		r.Exclude = map[string]bool{}
		for range 1 + rnd.IntN(10) {
			r.Exclude[s.Hosts[rnd.IntN(len(s.Hosts))].ID] = true
		}
	}
	return r
}

// TestPlaceProperty checks Place against the naive reference on random
// snapshots and requests: a chosen host passes every hard filter, a
// refusal means no host does, and the explanation accounts for every host
// it considered.
func TestPlaceProperty(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 7))
	configs := []PlaceConfig{{}, {TopK: 1, Sample: 1}, {TopK: 5, Sample: 1000}}
	placed, refused := 0, 0
	for i := range 5000 {
		s := randomSnapshot(rnd)
		r := randomRequest(rnd, s)
		c := configs[i%len(configs)]
		d, err := c.Place(s, r, rnd)
		var fits []string
		for _, h := range s.Hosts {
			if naiveFits(s, r, h) {
				fits = append(fits, h.ID)
			}
		}
		if err != nil {
			e := noFit(t, err)
			require.Empty(t, fits, "case %d: Place refused (%s) but the reference fits %v; request %+v", i, e.Summary, fits, r)
			sum := 0
			for _, f := range e.Filters {
				sum += f.Removed
			}
			require.Equal(t, e.Considered, sum, "case %d", i)
			if r.HostID == "" {
				require.Equal(t, len(s.Hosts), e.Considered, "case %d: a refusal counts every host", i)
			}
			refused++
			continue
		}
		placed++
		require.Contains(t, fits, d.HostID, "case %d: Place chose a host the reference refuses; request %+v", i, r)
		sum := d.Feasible
		for _, f := range d.Explanation.Filters {
			sum += f.Removed
		}
		require.Equal(t, d.Explanation.Considered, sum, "case %d", i)
		if g := r.Group; c.Sample == 1000 && g != nil && !g.Hard && len(d.Soft) > 0 {
			for _, id := range fits {
				require.False(t, naiveKeeps(s, g, s.Host(id)), "case %d: %s keeps the soft rule but %s was chosen", i, id, d.HostID)
			}
		}
	}
	require.Greater(t, placed, 500)
	require.Greater(t, refused, 500)
}
