package alerts_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/alerts"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/monlab"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/store"
)

// The renderer on a real database and a real Prometheus: a rule created
// over the store appears in Prometheus after one render, an unchanged
// set does not rewrite the file or reload, a deleted rule leaves, and a
// Prometheus that does not answer is reloaded again on the next render.
func TestRendererWritesAndReloads(t *testing.T) {
	labtest.Need(t, "prometheus")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules")
	s, err := monlab.Start(ctx, monlab.Config{Dir: dir, ScrapeInterval: time.Second, RuleFiles: []string{rules + "/*.yml"}, NoNodeExporter: true})
	require.NoError(t, err)
	t.Cleanup(s.Stop)
	pool, err := pgxpool.New(ctx, pgtest.URL(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = store.Migrate(ctx, pool)
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	down := "http://127.0.0.1:1" // nothing listens
	r, err := alerts.NewRenderer(alerts.RendererConfig{Pool: pool, Dir: rules, Prometheus: []string{s.PrometheusURL}, Registerer: reg})
	require.NoError(t, err)
	rec, err := store.CreateAlertRule(ctx, pool, store.AlertRuleRecord{AlertRule: rule(`max by (host) (rackcloud_bmc_up)`)})
	require.NoError(t, err)
	changed, err := r.Render(ctx)
	require.NoError(t, err)
	require.True(t, changed)
	inProm := func(name string, want bool) {
		t.Helper()
		labtest.Eventually(t, 30*time.Second, 200*time.Millisecond, name+" in Prometheus", func() (bool, string) {
			b := get(t, s.PrometheusURL+"/api/v1/rules")
			return strings.Contains(b, `"name":"`+name+`"`) == want && strings.Contains(b, `"name":"HostDown"`), b
		})
	}
	inProm("host-too-hot", true)

	before, err := os.Stat(r.Path())
	require.NoError(t, err)
	changed, err = r.Render(ctx)
	require.NoError(t, err)
	require.False(t, changed)
	after, err := os.Stat(r.Path())
	require.NoError(t, err)
	require.Equal(t, before.ModTime(), after.ModTime(), "an unchanged set is not written again")
	require.Equal(t, 1.0, r.ReloadsOK(), "nor reloaded")

	require.NoError(t, store.DeleteAlertRule(ctx, pool, rec.ID, rec.Version))
	bad, err := alerts.NewRenderer(alerts.RendererConfig{Pool: pool, Dir: rules, Prometheus: []string{down, s.PrometheusURL}})
	require.NoError(t, err)
	changed, err = bad.Render(ctx)
	require.True(t, changed)
	require.ErrorContains(t, err, "reload http://127.0.0.1:1")
	inProm("host-too-hot", false)
	_, err = bad.Render(ctx)
	require.Error(t, err, "the reload that failed is tried again")
}
