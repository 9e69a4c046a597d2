package alerts_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-openapi/strfmt"
	"github.com/prometheus/alertmanager/api/v2/client/silence"
	"github.com/prometheus/alertmanager/api/v2/models"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/alerts"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/monlab"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/store"
)

// A host that enters maintenance gets a rackcloud silence and its alerts
// show as silenced; when it leaves, the silence is expired and they are
// active again. Syncing twice changes nothing.
func TestSilencerFollowsMaintenance(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.DB(t)
	s, am := labtest.Alertmanager(t)
	for _, n := range []string{"node-a", "node-b"} {
		_, err := store.CreateHost(ctx, pool, rackcloud.Host{Meta: rackcloud.Meta{Name: n}})
		require.NoError(t, err)
	}
	state := func(host, st, reason string) {
		_, err := pool.Exec(ctx, `UPDATE hosts SET state = $2, state_reason = $3 WHERE name = $1`, host, st, reason)
		require.NoError(t, err)
	}
	reg := prometheus.NewRegistry()
	sil, err := alerts.NewSilencer(alerts.SilencerConfig{Pool: pool, AM: am, Registerer: reg})
	require.NoError(t, err)

	require.NoError(t, s.PostAlerts(ctx, monlab.Alert{Labels: map[string]string{"alertname": "DiskFull", "host": "node-a"}},
		monlab.Alert{Labels: map[string]string{"alertname": "DiskFull", "host": "node-b"}}))

	state("node-a", "maintenance", "disk swap")
	require.NoError(t, sil.Sync(ctx))
	require.NoError(t, sil.Sync(ctx))
	got, err := am.Silences(ctx)
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, "node-a", got[0].Host)
	require.Equal(t, "host node-a in maintenance: disk swap", got[0].Comment)
	require.Equal(t, "active", got[0].State)
	require.Greater(t, time.Until(got[0].EndsAt), 24*time.Hour)
	id := got[0].ID
	require.Equal(t, map[string]float64{"rackcloud_alerts_maintenance_silences": 1, "rackcloud_alerts_silencer_leader": 0,
		`rackcloud_alerts_silence_changes_total{action="expire"}`: 0, `rackcloud_alerts_silence_changes_total{action="post"}`: 1,
		`rackcloud_alerts_silencer_syncs_total{result="ok"}`: 2}, gather(t, reg))
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	labtest.Need(t, "promtool")
	lint := exec.Command("promtool", "check", "metrics")
	lint.Stdin = rec.Body
	out, err := lint.CombinedOutput()
	require.NoError(t, err, "promtool check metrics:\n%s", out)

	labtest.Eventually(t, 15*time.Second, 200*time.Millisecond, "node-a's alert silenced", func() (bool, string) {
		as, err := am.List(ctx, []string{`alertname="DiskFull"`})
		if err != nil {
			return false, err.Error()
		}
		byHost := map[string]alerts.Alert{}
		for _, a := range as {
			byHost[a.Labels["host"]] = a
		}
		a, b := byHost["node-a"], byHost["node-b"]
		ok := a.State == "suppressed" && len(a.SilencedBy) == 1 && a.SilencedBy[0] == id && b.State == "active"
		return ok, fmt.Sprintf("%+v", as)
	})

	state("node-a", "ready", "")
	require.NoError(t, sil.Sync(ctx))
	got, err = am.Silences(ctx)
	require.NoError(t, err)
	require.Empty(t, got)
	resp, err := s.AlertmanagerAPI().Silence.GetSilence(silence.NewGetSilenceParams().WithSilenceID(strfmt.UUID(id)))
	require.NoError(t, err)
	require.Equal(t, models.SilenceStatusStateExpired, *resp.Payload.Status.State)
	labtest.Eventually(t, 15*time.Second, 200*time.Millisecond, "node-a's alert active again", func() (bool, string) {
		as, err := am.List(ctx, []string{`alertname="DiskFull"`, `host="node-a"`})
		return err == nil && len(as) == 1 && as[0].State == "active", fmt.Sprintf("%+v %v", as, err)
	})
}

// Silence and Expire are idempotent for one host, and a silence made by
// someone else is never touched.
func TestAMSilenceIdempotent(t *testing.T) {
	ctx := context.Background()
	s, am := labtest.Alertmanager(t)
	c := s.AlertmanagerAPI()
	name, value, by, comment, f := "host", "node-a", "alice", "mine", false
	start, end := strfmt.DateTime(time.Now()), strfmt.DateTime(time.Now().Add(time.Hour))
	_, err := c.Silence.PostSilences(silence.NewPostSilencesParams().WithSilence(&models.PostableSilence{Silence: models.Silence{
		Matchers: models.Matchers{{Name: &name, Value: &value, IsRegex: &f}}, StartsAt: &start, EndsAt: &end,
		CreatedBy: &by, Comment: &comment}}))
	require.NoError(t, err)

	require.NoError(t, am.Silence(ctx, "node-a", "rack work"))
	require.NoError(t, am.Silence(ctx, "node-a", "rack work"))
	got, err := am.Silences(ctx)
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.NoError(t, am.Expire(ctx, "node-a"))
	require.NoError(t, am.Expire(ctx, "node-a"))
	got, err = am.Silences(ctx)
	require.NoError(t, err)
	require.Empty(t, got)

	all, err := c.Silence.GetSilences(silence.NewGetSilencesParams())
	require.NoError(t, err)
	active := 0
	for _, s := range all.Payload {
		if *s.Status.State == models.SilenceStatusStateActive {
			active++
			require.Equal(t, "alice", *s.CreatedBy)
		}
	}
	require.Equal(t, 1, active, "alice's silence is still there")

	require.ErrorIs(t, am.Silence(ctx, `bad"name`, ""), rackcloud.ErrInvalid)
}

// Run, as the leader, acts on a host change at once: the interval is an
// hour, so only the change notification can make the silence.
func TestSilencerRunWakesOnHostChange(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pool := pgtest.DB(t)
	_, am := labtest.Alertmanager(t)
	h, err := store.CreateHost(ctx, pool, rackcloud.Host{Meta: rackcloud.Meta{Name: "node-c"}})
	require.NoError(t, err)
	sil, err := alerts.NewSilencer(alerts.SilencerConfig{Pool: pool, AM: am, Interval: time.Hour})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- sil.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	// The first sync (on taking the lock) finds nothing; then the change.
	labtest.Eventually(t, 15*time.Second, 100*time.Millisecond, "silence of node-c", func() (bool, string) {
		_, err := pool.Exec(ctx, `UPDATE hosts SET state = 'maintenance', state_reason = 'move' WHERE id = $1 AND state <> 'maintenance'`, h.ID)
		require.NoError(t, err)
		got, err := am.Silences(ctx)
		return err == nil && len(got) == 1 && got[0].Host == "node-c", fmt.Sprintf("%+v %v", got, err)
	})
}

// gather returns every sample of reg by name{label="value",...}.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			if len(m.GetLabel()) > 0 {
				var ls []string
				for _, l := range m.GetLabel() {
					ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				}
				name += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.Gauge != nil:
				out[name] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[name] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// NewAM refuses what cannot be an Alertmanager's base URL, clearly and
// without repeating a password.
func TestNewAMBadInput(t *testing.T) {
	for name, tc := range map[string]struct {
		urls []string
		want string
	}{
		"none":        {nil, "no Alertmanager URL"},
		"no scheme":   {[]string{"127.0.0.1:9093"}, `Alertmanager URL "127.0.0.1:9093"`},
		"ftp":         {[]string{"ftp://127.0.0.1:9093"}, "want http(s)://host:port[/prefix]"},
		"credentials": {[]string{"http://am:s3cret@127.0.0.1:9093"}, "without credentials"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := alerts.NewAM(tc.urls, nil)
			require.ErrorIs(t, err, rackcloud.ErrInvalid)
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "s3cret")
		})
	}
}
