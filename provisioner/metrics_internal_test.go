package provisioner

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/store"
)

// Scrapes within hostsCacheTTL share one count; a later one counts anew.
func TestHostsCollectorCaches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.URL(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	c := newHostsCollector(pool)
	now := time.Unix(1e9, 0)
	c.now = func() time.Time { return now }
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	discovered := func() float64 {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if mf.GetName() == "rackcloud_hosts" && len(m.GetLabel()) == 2 &&
					m.GetLabel()[0].GetValue() == "none" && m.GetLabel()[1].GetValue() == "discovered" {
					return m.GetGauge().GetValue()
				}
			}
		}
		t.Fatal("no rackcloud_hosts{role=none,state=discovered}")
		return 0
	}
	add := func(name, mac string) {
		_, err := store.CreateHost(ctx, pool, rackcloud.Host{Meta: rackcloud.Meta{Name: name}, MACs: []string{mac}})
		require.NoError(t, err)
	}
	add("cache-a", "52:54:00:ca:00:01")
	require.Equal(t, 1.0, discovered())
	add("cache-b", "52:54:00:ca:00:02")
	now = now.Add(hostsCacheTTL - time.Second)
	require.Equal(t, 1.0, discovered(), "served from the cache")
	now = now.Add(time.Second)
	require.Equal(t, 2.0, discovered(), "counted anew after the TTL")
}
