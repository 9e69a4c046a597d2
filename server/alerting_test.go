package server_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/api/v2/client/general"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/alerts"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/server"
	"github.com/rackcloud/rackcloud/store"
)

// A server with an Alertmanager writes rackcloud's configuration, has the
// Alertmanager reload it, silences a host that enters maintenance and
// serves GET /v1/alerts.
func TestServerAlerting(t *testing.T) {
	labtest.Need(t, "amtool")
	ctx := context.Background()
	lab, am := labtest.Alertmanager(t)
	dir := t.TempDir()
	tokenFile, adminFile := filepath.Join(dir, "webhook.token"), filepath.Join(dir, "admin.token")
	amConf := filepath.Join(lab.Dir, "alertmanager.yml") // the file the lab's Alertmanager reads
	require.NoError(t, os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600))
	dbURL := pgtest.URL(t)
	_, base := startWith(t, server.Config{Listen: "127.0.0.1:0", DatabaseURL: dbURL, RetryMax: 500 * time.Millisecond,
		BootstrapTokenFile: adminFile, Alerting: server.AlertingConfig{
			AlertmanagerURLs: []string{lab.AlertmanagerURL}, ConfigFile: amConf,
			RemediationURL: "http://127.0.0.1:9/v1/availability/webhook", RemediationTokenFile: tokenFile,
			Operators:       []alerts.Receiver{{Name: "ops", WebhookURLs: []string{"http://127.0.0.1:9/ops"}}},
			SilenceInterval: time.Hour}})
	waitReady(t, base, 30*time.Second)

	labtest.Eventually(t, 15*time.Second, 100*time.Millisecond, "the Alertmanager runs rackcloud's configuration", func() (bool, string) {
		st, err := lab.AlertmanagerAPI().General.GetStatus(general.NewGetStatusParams())
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(*st.Payload.Config.Original, alerts.RemediationReceiver), *st.Payload.Config.Original
	})
	out, err := exec.Command("amtool", "check-config", amConf).CombinedOutput()
	require.NoError(t, err, string(out))
	fi, err := os.Stat(amConf)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), fi.Mode().Perm())

	pool := pgtest.DB(t)
	h, err := store.CreateHost(ctx, pool, rackcloud.Host{Meta: rackcloud.Meta{Name: "node-m"}})
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE hosts SET state = 'maintenance', state_reason = 'firmware' WHERE id = $1`, h.ID)
	require.NoError(t, err)
	labtest.Eventually(t, 15*time.Second, 100*time.Millisecond, "node-m silenced", func() (bool, string) {
		got, err := am.Silences(ctx)
		return err == nil && len(got) == 1 && got[0].Host == "node-m", fmt.Sprintf("%+v %v", got, err)
	})

	tok, err := os.ReadFile(adminFile)
	require.NoError(t, err)
	req, err := http.NewRequest("GET", base+"/v1/alerts", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
}

// Alerting flags that cannot work stop the server before it starts, and
// say which flag.
func TestServerAlertingBadConfig(t *testing.T) {
	for name, tc := range map[string]struct {
		c    server.AlertingConfig
		want string
	}{
		"bad URL":           {server.AlertingConfig{AlertmanagerURLs: []string{"127.0.0.1:9093"}}, "--alertmanager-url"},
		"webhook no config": {server.AlertingConfig{RemediationURL: "http://127.0.0.1:9/hook"}, "give --alertmanager-config"},
		"webhook no token":  {server.AlertingConfig{ConfigFile: "/tmp/x.yml", RemediationURL: "http://127.0.0.1:9/hook"}, "--alertmanager-config: invalid"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := server.New(context.Background(), server.Config{DatabaseURL: "postgres://127.0.0.1:1/x", Alerting: tc.c}, nil)
			require.Error(t, err)
			require.True(t, errors.Is(err, rackcloud.ErrInvalid), err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}
