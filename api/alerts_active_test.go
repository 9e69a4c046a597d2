package api_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/alerts"
	"github.com/rackcloud/rackcloud/api"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/monlab"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/store"
)

// shared is one lab Alertmanager for every test's env (newEnv), started
// on first use and stopped by TestMain.
var shared struct {
	once sync.Once
	dir  string
	s    *monlab.Stack
	am   *alerts.AM
	err  error
}

func sharedAM(t *testing.T) *alerts.AM {
	t.Helper()
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "rackcloud-api-am-"); shared.err != nil {
			return
		}
		if shared.s, shared.err = monlab.Start(context.Background(), monlab.Config{Dir: shared.dir, NoNodeExporter: true}); shared.err != nil {
			return
		}
		shared.am, shared.err = alerts.NewAM([]string{shared.s.AlertmanagerURL}, nil)
	})
	require.NoError(t, shared.err, "the lab's Alertmanager (run lab/install.sh)")
	return shared.am
}

func stopSharedAM() {
	if shared.s != nil {
		shared.s.Stop()
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
}

// alertsEnv is an API server whose GET /v1/alerts asks am (nil: none).
func alertsEnv(t *testing.T, am api.ActiveAlerts) *env {
	t.Helper()
	pool := pgtest.DB(t)
	a := api.New(api.Deps{Pool: pool, Logger: slog.New(slog.DiscardHandler), Alerts: am})
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	_, secret, err := store.Bootstrap(context.Background(), pool, store.BootstrapOptions{})
	require.NoError(t, err)
	return &env{t: t, pool: pool, srv: srv, api: a, admin: secret}
}

// GET /v1/alerts shows what the real Alertmanager holds: a silenced
// alert as suppressed with its silence, filters applied by Alertmanager,
// and members and viewers only their projects' alerts.
func TestListAlertsFromAlertmanager(t *testing.T) {
	ctx := context.Background()
	s, am := labtest.Alertmanager(t)
	e := alertsEnv(t, am)

	require.NoError(t, s.PostAlerts(ctx,
		monlab.Alert{Labels: map[string]string{"alertname": "HostDown", "host": "node-a", "severity": "critical"},
			Annotations: map[string]string{"summary": "node-a is down"}},
		monlab.Alert{Labels: map[string]string{"alertname": "GuestDown", "project": "shop", "severity": "warning"}}))
	require.NoError(t, am.Silence(ctx, "node-a", "disk swap"))
	sil, err := am.Silences(ctx)
	require.NoError(t, err)
	require.Len(t, sil, 1)

	var items []any
	labtest.Eventually(t, 15*time.Second, 200*time.Millisecond, "both alerts, node-a's suppressed", func() (bool, string) {
		r := e.must(200, "GET", "/v1/alerts", e.admin, nil)
		items = r["items"].([]any)
		if len(items) != 2 {
			return false, e.do("GET", "/v1/alerts", e.admin, nil).String()
		}
		return items[1].(map[string]any)["state"] == "suppressed", e.do("GET", "/v1/alerts", e.admin, nil).String()
	})
	guest, host := items[0].(map[string]any), items[1].(map[string]any)
	require.Equal(t, "GuestDown", guest["labels"].(map[string]any)["alertname"])
	require.Equal(t, "active", guest["state"])
	require.Equal(t, []any{}, guest["silenced_by"])
	require.Equal(t, []any{sil[0].ID}, host["silenced_by"])
	require.Equal(t, "node-a is down", host["annotations"].(map[string]any)["summary"])
	st, err := time.Parse(time.RFC3339, host["starts_at"].(string))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(-time.Minute), st, 30*time.Second)
	require.Contains(t, host["receivers"], "operators")

	r := e.must(200, "GET", `/v1/alerts?filter=`+url.QueryEscape(`severity="critical"`)+`&filter=`+url.QueryEscape(`host=~"node-.*"`), e.admin, nil)
	require.Len(t, r["items"], 1)
	require.Equal(t, "HostDown", r["items"].([]any)[0].(map[string]any)["labels"].(map[string]any)["alertname"])

	shop := e.must(201, "POST", "/v1/projects", e.admin, map[string]any{"name": "shop"})["id"].(string)
	other := e.must(201, "POST", "/v1/projects", e.admin, map[string]any{"name": "other"})["id"].(string)
	viewer, _ := e.token("vera", rackcloud.RoleViewer, shop)
	r = e.must(200, "GET", "/v1/alerts", viewer, nil)
	require.Len(t, r["items"], 1)
	require.Equal(t, "GuestDown", r["items"].([]any)[0].(map[string]any)["labels"].(map[string]any)["alertname"])
	member, _ := e.token("max", rackcloud.RoleMember, other)
	r = e.must(200, "GET", "/v1/alerts", member, nil)
	require.Empty(t, r["items"])

	e.problem(e.do("GET", "/v1/alerts?filter="+url.QueryEscape(`host=~"(`), e.admin, nil), 422, api.ProblemValidation)
	e.problem(e.do("GET", "/v1/alerts", "", nil), 401, api.ProblemUnauthorized)
}

// Without an Alertmanager the answer is 503 and says so; with one that
// does not answer it is 502.
func TestListAlertsWithoutAlertmanager(t *testing.T) {
	t.Run("none", func(t *testing.T) {
		e := alertsEnv(t, nil)
		r := e.do("GET", "/v1/alerts", e.admin, nil)
		e.problem(r, 503, api.ProblemUnavailable)
		require.Contains(t, r.String(), "no Alertmanager is configured")
	})
	t.Run("not answering", func(t *testing.T) {
		am, err := alerts.NewAM([]string{"http://127.0.0.1:1"}, nil)
		require.NoError(t, err)
		e := alertsEnv(t, am)
		r := e.do("GET", "/v1/alerts", e.admin, nil)
		require.Equal(t, 502, r.Code, r.String())
		require.Contains(t, r.String(), "Alertmanager did not answer")
		require.Contains(t, r.String(), "127.0.0.1:1")
	})
}
