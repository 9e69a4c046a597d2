package monlab_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/lab/monlab"
)

// The stack really starts, Prometheus really scrapes a target that stands
// in for rackcloud, and the rendered configs pass the real checkers.
func TestStackScrapesTarget(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "rackcloud_lab_probe", Help: "probe"})
	g.Set(42)
	reg.MustRegister(g)
	target := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer target.Close()

	dir := t.TempDir()
	s, err := monlab.Start(context.Background(), monlab.Config{Dir: dir,
		RackcloudTargets: []string{strings.TrimPrefix(target.URL, "http://")},
		ScrapeInterval:   time.Second, WebhookURL: "http://127.0.0.1:1/hook"})
	require.NoError(t, err)
	t.Cleanup(s.Stop)

	out, err := exec.Command("promtool", "check", "config", filepath.Join(dir, "prometheus.yml")).CombinedOutput()
	require.NoError(t, err, string(out))
	out, err = exec.Command("amtool", "check-config", filepath.Join(dir, "alertmanager.yml")).CombinedOutput()
	require.NoError(t, err, string(out))

	qctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := monlab.WaitQuery(qctx, s.PrometheusURL, "rackcloud_lab_probe", func(r []monlab.Sample) bool { return len(r) == 1 })
	require.NoError(t, err, "Prometheus never scraped the target")
	require.Equal(t, "42", res[0].Value)
	resp, err := http.Get(s.AlertmanagerURL + "/api/v2/status")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)

	s.Stop()
	s.Stop()
	_, err = http.Get(s.PrometheusURL + "/-/ready")
	require.Error(t, err, "Prometheus still answers after Stop")
}
