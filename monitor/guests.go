package monitor

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/vmctl"
)

// Defaults of GuestStatsConfig.
const (
	DefaultStatsInterval = 15 * time.Second
	DefaultStatsParallel = 16
	DefaultStatsTimeout  = 10 * time.Second
	// DefaultTargetTTL is how long a host's resolved target (its TLS
	// configuration) is reused before it is resolved again.
	DefaultTargetTTL = 10 * time.Minute
)

// TargetFunc resolves how to reach a host's daemon (vmctl.Targets.For).
type TargetFunc func(ctx context.Context, h rackcloud.Host) (vmctl.Target, error)

// GuestStatsConfig configures GuestStats.
type GuestStatsConfig struct {
	Inventory *Inventory
	// Readers read stats by host role (the guest drivers that implement
	// vmctl.StatsReader).
	Readers map[rackcloud.HostRole]vmctl.StatsReader
	Target  TargetFunc
	// Interval between two polls of a host (0: DefaultStatsInterval);
	// Parallel hosts are polled at once (0: DefaultStatsParallel), each
	// for at most Timeout (0: DefaultStatsTimeout).
	Interval, Timeout time.Duration
	Parallel          int
	Logger            *slog.Logger
}

// GuestStats is a prometheus.Collector of every running guest's CPU,
// memory, disk and network counters, read from the drivers with one
// request per host per interval (libvirt's bulk domain stats; Docker has
// no bulk call, so one list and a one-shot stats per container). A scrape
// only reads the cache: when the last round is older than Interval it
// starts the next one in the background, so hosts are polled only while
// someone scrapes, and a slow or dead host never delays a scrape.
//
// Names are those of prometheus-libvirt-exporter for VMs and cAdvisor for
// containers, with guest, guest_id, project and host labels.
type GuestStats struct {
	cfg GuestStatsConfig

	mu      sync.Mutex
	hosts   map[string]hostStats // by host ID
	round   time.Time            // when the last round started
	running bool
	targets map[string]cachedTarget

	vm, ct                [6]*prometheus.Desc
	up, success, duration *prometheus.Desc
}

type hostStats struct {
	at     time.Time
	guests map[string]vmctl.GuestStats
	err    error
}

type cachedTarget struct {
	endpoint string
	t        vmctl.Target
	until    time.Time
}

// NewGuestStats makes the collector.
func NewGuestStats(cfg GuestStatsConfig) *GuestStats {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultStatsInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultStatsTimeout
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = DefaultStatsParallel
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	labels := []string{"guest", "guest_id", "project", "host"}
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, labels, nil) }
	return &GuestStats{cfg: cfg, hosts: map[string]hostStats{}, targets: map[string]cachedTarget{},
		vm: [6]*prometheus.Desc{
			d("libvirt_domain_info_cpu_time_seconds_total", "CPU time the VM used, all vCPUs together."),
			d("libvirt_domain_info_memory_usage_bytes", "Memory the VM uses (its QEMU process's resident set, else its balloon's size)."),
			d("libvirt_domain_block_stats_read_bytes_total", "Bytes the VM read from its disks."),
			d("libvirt_domain_block_stats_write_bytes_total", "Bytes the VM wrote to its disks."),
			d("libvirt_domain_interface_stats_receive_bytes_total", "Bytes the VM received on its interfaces."),
			d("libvirt_domain_interface_stats_transmit_bytes_total", "Bytes the VM sent on its interfaces."),
		},
		ct: [6]*prometheus.Desc{
			d("container_cpu_usage_seconds_total", "CPU time the container used, all CPUs together."),
			d("container_memory_working_set_bytes", "Memory the container uses, less its inactive page cache."),
			d("container_fs_reads_bytes_total", "Bytes the container read from block devices."),
			d("container_fs_writes_bytes_total", "Bytes the container wrote to block devices."),
			d("container_network_receive_bytes_total", "Bytes the container received on its interfaces."),
			d("container_network_transmit_bytes_total", "Bytes the container sent on its interfaces."),
		},
		up: prometheus.NewDesc("rackcloud_guest_stats_up", "1 when the last poll of the host's guest stats succeeded.",
			[]string{"host", "role"}, nil),
		success:  prometheus.NewDesc("rackcloud_monitor_collector_success", "1 when the collector had data for this scrape.", nil, prometheus.Labels{"collector": "guest_stats"}),
		duration: prometheus.NewDesc("rackcloud_monitor_collector_duration_seconds", "How long the collector took for this scrape.", nil, prometheus.Labels{"collector": "guest_stats"}),
	}
}

var _ prometheus.Collector = (*GuestStats)(nil)

// Describe sends the descriptors.
func (g *GuestStats) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range append(append(g.vm[:], g.ct[:]...), g.up, g.success, g.duration) {
		ch <- d
	}
}

// Collect sends the cached stats of the guests in the inventory and
// starts the next round when one is due.
func (g *GuestStats) Collect(ch chan<- prometheus.Metric) {
	start := time.Now()
	snap := g.cfg.Inventory.Current()
	ok := 0.0
	if snap != nil {
		ok = 1
		g.maybePoll(snap)
		g.mu.Lock()
		hosts := g.hosts
		g.mu.Unlock()
		for i := range snap.Hosts {
			h := &snap.Hosts[i]
			hs, polled := hosts[h.ID]
			if !polled {
				continue
			}
			up := 1.0
			if hs.err != nil {
				up = 0
			}
			ch <- prometheus.MustNewConstMetric(g.up, prometheus.GaugeValue, up, h.Name, string(h.Role))
		}
		for i := range snap.Guests {
			gu := &snap.Guests[i]
			hs, polled := hosts[gu.HostID]
			st, has := hs.guests[gu.ID]
			if !polled || !has {
				continue
			}
			descs := &g.ct
			if gu.Kind == rackcloud.GuestVM {
				descs = &g.vm
			}
			host := ""
			if h := snap.Host(gu.HostID); h != nil {
				host = h.Name
			}
			lv := []string{gu.Name, gu.ID, gu.Project, host}
			for j, v := range []struct {
				t prometheus.ValueType
				v float64
			}{{prometheus.CounterValue, st.CPUSeconds}, {prometheus.GaugeValue, float64(st.MemoryBytes)},
				{prometheus.CounterValue, float64(st.DiskReadBytes)}, {prometheus.CounterValue, float64(st.DiskWriteBytes)},
				{prometheus.CounterValue, float64(st.NetRxBytes)}, {prometheus.CounterValue, float64(st.NetTxBytes)}} {
				ch <- prometheus.MustNewConstMetric(descs[j], v.t, v.v, lv...)
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(g.success, prometheus.GaugeValue, ok)
	ch <- prometheus.MustNewConstMetric(g.duration, prometheus.GaugeValue, time.Since(start).Seconds())
}

// maybePoll starts a round over snap's hosts when the last one started
// more than Interval ago and none runs.
func (g *GuestStats) maybePoll(snap *Snapshot) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.running || time.Since(g.round) < g.cfg.Interval {
		return
	}
	g.running, g.round = true, time.Now()
	go func() {
		g.Poll(context.Background(), snap)
		g.mu.Lock()
		g.running = false
		g.mu.Unlock()
	}()
}

// Poll reads the stats of every ready host in snap whose role has a
// reader, Parallel at a time, and replaces the cache when all are done
// (hosts that are gone drop out of it).
func (g *GuestStats) Poll(ctx context.Context, snap *Snapshot) {
	var mu sync.Mutex
	next := map[string]hostStats{}
	eg := errgroup.Group{}
	eg.SetLimit(g.cfg.Parallel)
	for i := range snap.Hosts {
		h := snap.Hosts[i]
		r := g.cfg.Readers[h.Role]
		if r == nil || h.Endpoint == "" || h.State != rackcloud.HostReady && h.State != rackcloud.HostDraining {
			continue
		}
		eg.Go(func() error {
			hctx, cancel := context.WithTimeoutCause(ctx, g.cfg.Timeout, errors.New("guest stats: the host did not answer in time"))
			defer cancel()
			hs := hostStats{at: time.Now()}
			t, err := g.target(hctx, &h)
			if err == nil {
				hs.guests, err = r.Stats(hctx, t)
			}
			if err != nil {
				hs.err = err
				g.cfg.Logger.Debug("monitor: guest stats failed", "host", h.Name, "err", err)
			}
			mu.Lock()
			next[h.ID] = hs
			mu.Unlock()
			return nil
		})
	}
	_ = eg.Wait()
	g.mu.Lock()
	g.hosts = next
	g.mu.Unlock()
}

// target resolves h's target, reusing one resolved for the same endpoint
// within DefaultTargetTTL.
func (g *GuestStats) target(ctx context.Context, h *store.MonitorHost) (vmctl.Target, error) {
	g.mu.Lock()
	c, ok := g.targets[h.ID]
	g.mu.Unlock()
	if ok && c.endpoint == h.Endpoint && time.Now().Before(c.until) {
		return c.t, nil
	}
	t, err := g.cfg.Target(ctx, rackcloud.Host{Meta: rackcloud.Meta{ID: h.ID, Name: h.Name}, Role: h.Role, Endpoint: h.Endpoint})
	if err != nil {
		return t, err
	}
	g.mu.Lock()
	g.targets[h.ID] = cachedTarget{endpoint: h.Endpoint, t: t, until: time.Now().Add(DefaultTargetTTL)}
	g.mu.Unlock()
	return t, nil
}
