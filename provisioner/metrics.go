package provisioner

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackcloud/rackcloud"
)

// hostsCollector exports rackcloud_hosts{state,role}: how many hosts are
// in each lifecycle state, by role ("none" before one is set), every pair
// present (zeros too) so that alerts and dashboards see stable series.
type hostsCollector struct {
	pool *pgxpool.Pool
	desc *prometheus.Desc
	up   *prometheus.Desc
}

func newHostsCollector(pool *pgxpool.Pool) *hostsCollector {
	return &hostsCollector{pool: pool,
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

func (c *hostsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts := map[[2]string]float64{}
	rows, err := c.pool.Query(ctx, `SELECT state, COALESCE(NULLIF(role, ''), 'none'), count(*) FROM hosts GROUP BY 1, 2`)
	if err == nil {
		for rows.Next() {
			var state, role string
			var n int64
			if err = rows.Scan(&state, &role, &n); err != nil {
				break
			}
			counts[[2]string{state, role}] = float64(n)
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
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
