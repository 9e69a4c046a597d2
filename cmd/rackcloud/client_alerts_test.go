package main

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/api"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/monlab"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/store"
)

// alerts list against a real server whose Alertmanager is the lab's.
func TestAlertsList(t *testing.T) {
	ctx := context.Background()
	s, am := labtest.Alertmanager(t)
	pool := pgtest.DB(t)
	srv := httptest.NewServer(api.New(api.Deps{Pool: pool, Logger: slog.New(slog.DiscardHandler), Alerts: am}).Handler())
	t.Cleanup(srv.Close)
	_, admin, err := store.Bootstrap(ctx, pool, store.BootstrapOptions{})
	require.NoError(t, err)
	t.Setenv("RACKCLOUD_SERVER", srv.URL)
	t.Setenv("RACKCLOUD_TOKEN", admin)
	t.Setenv("RACKCLOUD_CONFIG", "")

	require.NoError(t, s.PostAlerts(ctx,
		monlab.Alert{Labels: map[string]string{"alertname": "HostDown", "host": "node-a", "severity": "critical"},
			Annotations: map[string]string{"summary": "node-a does not answer"}},
		monlab.Alert{Labels: map[string]string{"alertname": "DiskFull", "host": "node-b", "severity": "warning"}}))
	require.NoError(t, am.Silence(ctx, "node-a", "rack work"))

	labtest.Eventually(t, 15*time.Second, 200*time.Millisecond, "node-a's alert suppressed", func() (bool, string) {
		out := mustRun(t, "alerts", "list", "--host", "node-a")
		return regexp.MustCompile(`(?m)^HostDown\s+critical\s+node-a\s+suppressed\s+\S+\s+[0-9a-f-]{36}\s+node-a does not answer$`).MatchString(out), out
	})
	out := mustRun(t, "alerts", "list")
	require.Regexp(t, `(?s)ALERT\s+SEVERITY\s+HOST\s+STATE\s+SINCE\s+SILENCED_BY\s+SUMMARY\n`+
		`DiskFull\s+warning\s+node-b\s+active.*\nHostDown\s+critical\s+node-a\s+suppressed`, out)
	out = mustRun(t, "alerts", "list", "--active")
	require.Contains(t, out, "DiskFull")
	require.NotContains(t, out, "HostDown")
	out = mustRun(t, "alerts", "list", "-o", "json", "--filter", `severity="warning"`)
	require.Contains(t, out, `"alertname": "DiskFull"`)
	require.NotContains(t, out, "HostDown")

	_, _, err = run(t, "alerts", "list", "--filter", `host=~"(`)
	require.ErrorContains(t, err, "query.filter")
}
