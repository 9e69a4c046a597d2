package provisioner

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackcloud/rackcloud"
)

// hostsCacheTTL is how long one count of hosts serves scrapes: however
// many Prometheus servers scrape however often, the database counts at
// most once per TTL per replica.
const hostsCacheTTL = 5 * time.Second

// hostsCollector exports rackcloud_hosts{state,role}: how many hosts are
// in each lifecycle state, by role ("none" before one is set), every pair
// present (zeros too) so that alerts and dashboards see stable series.
// The count is cached for hostsCacheTTL; a failed count is not cached
// (rackcloud_hosts_query_ok 0, and the next scrape tries again).
type hostsCollector struct {
	pool *pgxpool.Pool
	desc *prometheus.Desc
	up   *prometheus.Desc
	now  func() time.Time

	mu     sync.Mutex // held while counting: concurrent scrapes share one count
	at     time.Time
	counts map[[2]string]float64
}

func newHostsCollector(pool *pgxpool.Pool) *hostsCollector {
	return &hostsCollector{pool: pool, now: time.Now,
		desc: prometheus.NewDesc("rackcloud_hosts", "Hosts by lifecycle state and role (none: not provisioned yet).",
			[]string{"state", "role"}, nil),
		up: prometheus.NewDesc("rackcloud_hosts_query_ok", "1 when the last count of hosts by state and role succeeded.", nil, nil)}
}

func (c *hostsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc; ch <- c.up }

// hostRoles are the role label's values: none, then the domain's roles.
func hostRoles() []string {
	out := []string{"none"}
	for _, r := range rackcloud.HostRoles() {
		out = append(out, string(r))
	}
	return out
}

// cached returns the counts, counting anew when the cached ones are older
// than hostsCacheTTL. The map is never changed once made.
func (c *hostsCollector) cached() (map[[2]string]float64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts != nil && c.now().Sub(c.at) < hostsCacheTTL {
		return c.counts, nil
	}
	at := c.now()
	counts, err := c.count()
	if err != nil {
		return nil, err
	}
	c.counts, c.at = counts, at
	return counts, nil
}

func (c *hostsCollector) count() (map[[2]string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts := map[[2]string]float64{}
	rows, err := c.pool.Query(ctx, `SELECT state, COALESCE(NULLIF(role, ''), 'none'), count(*) FROM hosts GROUP BY 1, 2`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var state, role string
		var n int64
		if err := rows.Scan(&state, &role, &n); err != nil {
			return nil, err
		}
		counts[[2]string{state, role}] = float64(n)
	}
	return counts, rows.Err()
}

func (c *hostsCollector) Collect(ch chan<- prometheus.Metric) {
	cached, err := c.cached()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	counts := make(map[[2]string]float64, len(cached))
	for k, v := range cached {
		counts[k] = v
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for _, s := range rackcloud.HostStates() {
		for _, r := range hostRoles() {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, counts[[2]string{string(s), r}], string(s), r)
			delete(counts, [2]string{string(s), r})
		}
	}
	for k, v := range counts { // a role or state this build does not know
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, k[0], k[1])
	}
}
