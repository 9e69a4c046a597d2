package monitor

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// Fleet is a prometheus.Collector of the fleet's shape (named
// rackcloud_fleet_*: the provisioner's rackcloud_hosts{state,role} is
// the same count by a query per scrape), computed from the
// Inventory's snapshot (never a query per scrape, and a scrape never
// waits for a load): hosts by region, zone, role and state; what each
// zone's hosts of each role can sell, use and have free per resource;
// guests by state and kind.
//
// Capacity counts hosts with a role. Sellable and used count every such
// host; free counts only hosts that take guests now (ready, not in
// maintenance), what placement could still use, never below zero per
// host. Memory and disk are in bytes.
type Fleet struct {
	inv *Inventory

	hosts, sellable, used, free, guests *prometheus.Desc
	age, success, duration              *prometheus.Desc
}

// NewFleet makes the collector; register it on the server's registry.
func NewFleet(inv *Inventory) *Fleet {
	capacity := []string{"region", "zone", "role", "resource"}
	inv.OnLoad(func(s *Snapshot) { fleetCountsOf(s) })
	return &Fleet{inv: inv,
		hosts: prometheus.NewDesc("rackcloud_fleet_hosts", "Hosts, by region, zone, role (none: not given one yet) and lifecycle state.",
			[]string{"region", "zone", "role", "state"}, nil),
		sellable: prometheus.NewDesc("rackcloud_fleet_capacity_sellable",
			"What the hosts with a role can sell in all (resources less overhead, times overcommit), by zone, role and resource.", capacity, nil),
		used: prometheus.NewDesc("rackcloud_fleet_capacity_used",
			"What the guests placed on hosts use, by zone, role and resource.", capacity, nil),
		free: prometheus.NewDesc("rackcloud_fleet_capacity_free",
			"What placement can still sell on hosts that take guests now (ready, not in maintenance), by zone, role and resource.", capacity, nil),
		guests: prometheus.NewDesc("rackcloud_fleet_guests", "Guests, by lifecycle state and kind.", []string{"state", "kind"}, nil),
		age: prometheus.NewDesc("rackcloud_monitor_inventory_age_seconds",
			"How old the inventory snapshot behind service discovery and fleet metrics is.", nil, nil),
		success: prometheus.NewDesc("rackcloud_monitor_collector_success",
			"1 when the collector had data for this scrape.", nil, prometheus.Labels{"collector": "fleet"}),
		duration: prometheus.NewDesc("rackcloud_monitor_collector_duration_seconds",
			"How long the collector took for this scrape.", nil, prometheus.Labels{"collector": "fleet"}),
	}
}

var _ prometheus.Collector = (*Fleet)(nil)

// Describe sends the descriptors.
func (f *Fleet) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{f.hosts, f.sellable, f.used, f.free, f.guests, f.age, f.success, f.duration} {
		ch <- d
	}
}

type hostKey struct {
	region, zone string
	role         rackcloud.HostRole
	state        rackcloud.HostState
}

type capKey struct {
	region, zone string
	role         rackcloud.HostRole
	resource     string
}

type guestKey struct {
	state rackcloud.GuestState
	kind  rackcloud.GuestKind
}

// fleetCounts is what one snapshot says, computed once per snapshot.
type fleetCounts struct {
	hosts                map[hostKey]int
	sellable, used, free map[capKey]float64
	guests               map[guestKey]int
}

// Resources of the capacity metrics.
const (
	ResourceCPU    = "cpu_cores"
	ResourceMemory = "memory_bytes"
	ResourceDisk   = "disk_bytes"
)

// fleetCountsOf counts s once (on load).
func fleetCountsOf(s *Snapshot) *fleetCounts {
	return derive(s, "fleet", func() *fleetCounts { return countFleet(s) })
}

func countFleet(s *Snapshot) *fleetCounts {
	c := &fleetCounts{hosts: map[hostKey]int{}, sellable: map[capKey]float64{}, used: map[capKey]float64{},
		free: map[capKey]float64{}, guests: map[guestKey]int{}}
	add := func(m map[capKey]float64, h *store.MonitorHost, r rackcloud.Resources) {
		for _, kv := range []struct {
			res string
			v   float64
		}{{ResourceCPU, float64(r.CPUCores)}, {ResourceMemory, float64(r.MemoryMiB) * (1 << 20)}, {ResourceDisk, float64(r.DiskGiB) * (1 << 30)}} {
			m[capKey{h.Region, h.Zone, h.Role, kv.res}] += kv.v
		}
	}
	for i := range s.Hosts {
		h := &s.Hosts[i]
		if _, seen := c.hosts[hostKey{h.Region, h.Zone, "", rackcloud.HostReady}]; !seen {
			// Every state and role of a zone, zeros too, so that a
			// dashboard's sum by state has a line for each.
			for _, st := range rackcloud.HostStates() {
				for _, r := range append([]rackcloud.HostRole{""}, rackcloud.HostRoles()...) {
					c.hosts[hostKey{h.Region, h.Zone, r, st}] += 0
				}
			}
		}
		c.hosts[hostKey{h.Region, h.Zone, h.Role, h.State}]++
		if h.Role == "" {
			continue
		}
		add(c.sellable, h, h.Capacity)
		add(c.used, h, h.Used)
		free := rackcloud.Resources{}
		if h.State == rackcloud.HostReady && !h.Maintenance {
			free = rackcloud.Resources{CPUCores: max(0, h.Capacity.CPUCores-h.Used.CPUCores),
				MemoryMiB: max(0, h.Capacity.MemoryMiB-h.Used.MemoryMiB), DiskGiB: max(0, h.Capacity.DiskGiB-h.Used.DiskGiB)}
		}
		add(c.free, h, free)
	}
	for i := range s.Guests {
		c.guests[guestKey{s.Guests[i].State, s.Guests[i].Kind}]++
	}
	return c
}

// roleLabel names a host's role as provisioner's rackcloud_hosts does:
// none for a host not given one yet.
func roleLabel(r rackcloud.HostRole) string {
	if r == "" {
		return "none"
	}
	return string(r)
}

// Collect sends the snapshot's counts; with no snapshot yet it sends only
// its success (0), and starts a load.
func (f *Fleet) Collect(ch chan<- prometheus.Metric) {
	start := time.Now()
	s := f.inv.Current()
	ok := 0.0
	if s != nil {
		ok = 1
		c := fleetCountsOf(s)
		for k, n := range c.hosts {
			ch <- prometheus.MustNewConstMetric(f.hosts, prometheus.GaugeValue, float64(n), k.region, k.zone, roleLabel(k.role), string(k.state))
		}
		for _, m := range []struct {
			d    *prometheus.Desc
			vals map[capKey]float64
		}{{f.sellable, c.sellable}, {f.used, c.used}, {f.free, c.free}} {
			for k, v := range m.vals {
				ch <- prometheus.MustNewConstMetric(m.d, prometheus.GaugeValue, v, k.region, k.zone, roleLabel(k.role), k.resource)
			}
		}
		for k, n := range c.guests {
			ch <- prometheus.MustNewConstMetric(f.guests, prometheus.GaugeValue, float64(n), string(k.state), string(k.kind))
		}
		ch <- prometheus.MustNewConstMetric(f.age, prometheus.GaugeValue, time.Since(s.At).Seconds())
	}
	ch <- prometheus.MustNewConstMetric(f.success, prometheus.GaugeValue, ok)
	ch <- prometheus.MustNewConstMetric(f.duration, prometheus.GaugeValue, time.Since(start).Seconds())
}
