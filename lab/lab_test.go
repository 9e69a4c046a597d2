package lab_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/lab"
	"github.com/rackcloud/rackcloud/lab/monlab"
	"github.com/rackcloud/rackcloud/lab/proc"
)

// The `make run` path: everything comes up, Prometheus sees the rackcloud
// target up, and a region round-trips through the API and PostgreSQL.
func TestUpEndToEnd(t *testing.T) {
	ports := make([]int, 5)
	for i := range ports {
		p, err := proc.FreePort()
		require.NoError(t, err)
		ports[i] = p
	}
	ctx := context.Background()
	dir := t.TempDir()
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755)) // postgres must reach it
	l, err := lab.Up(ctx, lab.Config{Dir: dir, APIPort: ports[0], PostgresPort: ports[1],
		PrometheusPort: ports[2], AlertmanagerPort: ports[3], NodeExporterPort: ports[4]}, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(l.Down)

	resp, err := http.Post(l.APIURL+"/v1/regions", "application/json", strings.NewReader(`{"name":"lab-region"}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	resp, err = http.Get(l.APIURL + "/v1/regions")
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(b), `"name":"lab-region"`)

	var sb strings.Builder
	l.Print(&sb)
	require.Contains(t, sb.String(), l.Monitor.PrometheusURL)

	qctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	_, err = monlab.WaitQuery(qctx, l.Monitor.PrometheusURL, `up{job="rackcloud"}`, func(r []monlab.Sample) bool {
		return len(r) == 1 && r[0].Value == "1"
	})
	require.NoError(t, err, "Prometheus never saw the rackcloud target up")
	l.Down()
	l.Down()
	_, err = http.Get(l.APIURL + "/healthz")
	require.Error(t, err, "server still answers after Down")
}
