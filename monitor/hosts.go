package monitor

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HostInfo is a prometheus.Collector of one series per host, from the
// Inventory's snapshot (never a query per scrape, and a scrape never
// waits for a load):
//
//   - rackcloud_host_info{host,host_id,region,zone,rack,role,state,maintenance} 1,
//     so that rules join on host (`... unless on(host)
//     rackcloud_host_info{state=~"maintenance|provisioning"}`);
//   - rackcloud_host_heartbeat_age_seconds{host}: seconds since the
//     installed host's agent last called in, for hosts that ever did;
//   - rackcloud_host_step_age_seconds{host,kind,step}: how long the host's
//     active task has been in its current step, for hosts with one (compare
//     with rackcloud_tasks_step_wait_timeout_seconds{kind,step}).
//
// The ages are computed at scrape time from timestamps in the snapshot:
// a step change newer than the snapshot shows only after the next load
// (at most the Inventory's max age later), so a step age can read up to
// that much too high. Heartbeats, which the HostDown alert (and so the
// availability controller) reads, come from Heartbeats when it is set:
// one small query, cached for HeartbeatTTL, so that their age is never
// more than that too high.
type HostInfo struct {
	inv                   *Inventory
	now                   func() time.Time
	info, heartbeat, step *prometheus.Desc

	// Heartbeats, when set, reads each host's last heartbeat by host ID.
	Heartbeats func(ctx context.Context) (map[string]time.Time, error)
	mu         sync.Mutex
	beats      map[string]time.Time
	beatsAt    time.Time
}

// HeartbeatTTL is how long HostInfo keeps what Heartbeats read.
const HeartbeatTTL = time.Second

// lastBeats returns fresh heartbeats (nil when Heartbeats is not set or
// fails: the snapshot's are used).
func (c *HostInfo) lastBeats() map[string]time.Time {
	if c.Heartbeats == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.beats != nil && c.now().Sub(c.beatsAt) < HeartbeatTTL {
		return c.beats
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b, err := c.Heartbeats(ctx)
	if err != nil {
		return nil
	}
	c.beats, c.beatsAt = b, c.now()
	return b
}

// NewHostInfo makes the collector; register it on the server's registry.
func NewHostInfo(inv *Inventory) *HostInfo {
	return &HostInfo{inv: inv, now: time.Now,
		info: prometheus.NewDesc("rackcloud_host_info",
			"1 per host, with where it is, its role (none: not given one yet), lifecycle state and maintenance flag.",
			[]string{"host", "host_id", "region", "zone", "rack", "role", "state", "maintenance"}, nil),
		heartbeat: prometheus.NewDesc("rackcloud_host_heartbeat_age_seconds",
			"Seconds since the installed host's agent last called in (hosts that ever did).", []string{"host"}, nil),
		step: prometheus.NewDesc("rackcloud_host_step_age_seconds",
			"Seconds the host's active task has been in its current step, by task kind and step (hosts with an active task).",
			[]string{"host", "kind", "step"}, nil),
	}
}

var _ prometheus.Collector = (*HostInfo)(nil)

// Describe sends the descriptors.
func (c *HostInfo) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.info
	ch <- c.heartbeat
	ch <- c.step
}

// Collect sends one series per host of the current snapshot (none before
// the first load, which Fleet's rackcloud_monitor_collector_success
// reports).
func (c *HostInfo) Collect(ch chan<- prometheus.Metric) {
	s := c.inv.Current()
	if s == nil {
		return
	}
	beats := c.lastBeats()
	now := c.now()
	for i := range s.Hosts {
		h := &s.Hosts[i]
		if b, ok := beats[h.ID]; ok && b.After(h.LastHeartbeat) {
			h = ptr(*h)
			h.LastHeartbeat = b
		}
		ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, h.Name, h.ID, h.Region, h.Zone, h.Rack,
			roleLabel(h.Role), string(h.State), strconv.FormatBool(h.Maintenance))
		if !h.LastHeartbeat.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.heartbeat, prometheus.GaugeValue, max(0, now.Sub(h.LastHeartbeat).Seconds()), h.Name)
		}
		if h.TaskKind != "" && !h.StepSince.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.step, prometheus.GaugeValue, max(0, now.Sub(h.StepSince).Seconds()),
				h.Name, h.TaskKind, h.TaskStep)
		}
	}
}

func ptr[T any](v T) *T { return &v }
