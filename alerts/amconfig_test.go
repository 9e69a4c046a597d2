package alerts_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amconfig "github.com/prometheus/alertmanager/config"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/alerts"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/monlab"
)

func fullAMConfig(tokenFile string) alerts.AMConfig {
	return alerts.AMConfig{
		RemediationURL:       "https://rackcloud.example:8443/v1/availability/webhook",
		RemediationTokenFile: tokenFile,
		Operators: []alerts.Receiver{
			{Name: "pager", Matchers: []string{`severity="critical"`}, WebhookURLs: []string{"https://pager.example/hook"}},
			{Name: "ops", WebhookURLs: []string{"https://chat.example/hook"}, Emails: []string{"ops@example.com"}},
		},
		SMTP: alerts.SMTP{Smarthost: "mail.example:25", From: "alertmanager@example.com"},
	}
}

// The rendered configuration passes the real Alertmanager's checker, and
// its routing tree sends each alert where the design says, as amtool
// computes it from the file.
func TestRenderAMRoutes(t *testing.T) {
	labtest.Need(t, "amtool")
	dir := t.TempDir()
	tok := filepath.Join(dir, "webhook.token")
	require.NoError(t, os.WriteFile(tok, []byte("s3cret"), 0o600))
	out, err := alerts.RenderAM(fullAMConfig(tok))
	require.NoError(t, err)
	require.NotContains(t, string(out), "s3cret")
	_, err = amconfig.Load(string(out))
	require.NoError(t, err, "the v0.35 module's loader:\n%s", out)
	conf := filepath.Join(dir, "alertmanager.yml")
	require.NoError(t, os.WriteFile(conf, out, 0o600))
	b, err := exec.Command("amtool", "check-config", conf).CombinedOutput()
	require.NoError(t, err, "%s\n%s", b, out)

	for name, tc := range map[string]struct {
		labels []string
		want   string
	}{
		"host down":          {[]string{"alertname=HostDown", "host=n1"}, "rackcloud-remediation,ops"},
		"host down critical": {[]string{"alertname=HostDown", "host=n1", "severity=critical", "remediate=true"}, "rackcloud-remediation,pager"},
		"labelled remediate": {[]string{"alertname=BMCLost", "remediate=true"}, "rackcloud-remediation,ops"},
		"remediate not true": {[]string{"alertname=BMCLost", "remediate=false"}, "ops"},
		"critical other":     {[]string{"alertname=DiskFull", "severity=critical"}, "pager"},
		"anything else":      {[]string{"alertname=DiskFull", "severity=warning"}, "ops"},
	} {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"config", "routes", "test", "--config.file=" + conf}, tc.labels...)
			b, err := amtool(args...)
			require.NoError(t, err, string(b))
			require.Equal(t, tc.want, strings.TrimSpace(string(b)))
		})
	}
}

// With no operator receivers every alert still has a receiver, and
// without a remediation URL there is no remediation route.
func TestRenderAMMinimal(t *testing.T) {
	labtest.Need(t, "amtool")
	out, err := alerts.RenderAM(alerts.AMConfig{})
	require.NoError(t, err)
	require.NotContains(t, string(out), alerts.RemediationReceiver)
	_, err = amconfig.Load(string(out))
	require.NoError(t, err, "the v0.35 module's loader:\n%s", out)
	conf := filepath.Join(t.TempDir(), "alertmanager.yml")
	require.NoError(t, os.WriteFile(conf, out, 0o600))
	b, err := amtool("config", "routes", "test", "--config.file="+conf, "alertname=HostDown")
	require.NoError(t, err, string(b))
	require.Equal(t, alerts.DefaultOperatorReceiver, strings.TrimSpace(string(b)))
}

// Bad input is refused with rackcloud.ErrInvalid, a message that says
// what is wrong, and never the secret.
func TestRenderAMBadInput(t *testing.T) {
	for name, tc := range map[string]struct {
		mod  func(*alerts.AMConfig)
		want string
	}{
		"no token":       {func(c *alerts.AMConfig) { c.RemediationTokenFile = "" }, "exactly one of a bearer token and a token file"},
		"two tokens":     {func(c *alerts.AMConfig) { c.RemediationToken = "s3cret" }, "exactly one"},
		"token, no URL":  {func(c *alerts.AMConfig) { c.RemediationURL = "" }, "a token without a URL"},
		"relative URL":   {func(c *alerts.AMConfig) { c.RemediationURL = "/v1/availability/webhook?t=s3cret" }, "remediation webhook URL: want an absolute http(s) URL"},
		"bad scheme":     {func(c *alerts.AMConfig) { c.Operators[1].WebhookURLs = []string{"ftp://s3cret@x/"} }, "operator receiver ops: webhook URL"},
		"taken name":     {func(c *alerts.AMConfig) { c.Operators[0].Name = alerts.RemediationReceiver }, "name taken"},
		"duplicate name": {func(c *alerts.AMConfig) { c.Operators[1].Name = "pager" }, `"pager": name taken`},
		"no name":        {func(c *alerts.AMConfig) { c.Operators[0].Name = "" }, "operator receiver 1: no name"},
		"email no smtp":  {func(c *alerts.AMConfig) { c.SMTP = alerts.SMTP{} }, "email needs an SMTP smarthost"},
		"bad default":    {func(c *alerts.AMConfig) { c.Default = "nobody" }, `default receiver "nobody"`},
		"bad matcher":    {func(c *alerts.AMConfig) { c.Operators[0].Matchers = []string{`severity=~"(`} }, "operator receiver pager: matcher"},
		"bad regexp":     {func(c *alerts.AMConfig) { c.Operators[0].Matchers = []string{`severity=~"("`} }, "operator receiver pager: matcher"},
	} {
		t.Run(name, func(t *testing.T) {
			c := fullAMConfig("/etc/rackcloud/webhook.token")
			tc.mod(&c)
			_, err := alerts.RenderAM(c)
			require.Error(t, err)
			require.True(t, errors.Is(err, rackcloud.ErrInvalid), err)
			require.Contains(t, err.Error(), tc.want)
			require.NotContains(t, err.Error(), "s3cret")
		})
	}
}

// amtool runs amtool and returns its standard output (it warns on standard
// error when an amtool config file names an Alertmanager URL).
func amtool(args ...string) ([]byte, error) {
	cmd := exec.Command("amtool", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return append(out, stderr.String()...), err
	}
	return out, nil
}

// The lab's Alertmanager, running rackcloud's configuration, calls the
// remediation webhook with the bearer token for HostDown and not for
// other alerts.
func TestRemediationWebhookCalled(t *testing.T) {
	labtest.Need(t, "prometheus", "prometheus-alertmanager")
	type call struct{ auth, body string }
	calls := make(chan call, 16)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		calls <- call{r.Header.Get("Authorization"), string(b)}
	}))
	t.Cleanup(hook.Close)
	s, err := monlab.Start(context.Background(), monlab.Config{Dir: t.TempDir(), NoNodeExporter: true,
		WebhookURL: hook.URL + "/v1/availability/webhook", WebhookToken: "lab-token"})
	require.NoError(t, err)
	t.Cleanup(s.Stop)

	require.NoError(t, s.PostAlerts(context.Background(),
		monlab.Alert{Labels: map[string]string{"alertname": "DiskFull", "host": "n2"}},
		monlab.Alert{Labels: map[string]string{"alertname": "HostDown", "host": "n1"}}))
	select {
	case c := <-calls:
		require.Equal(t, "Bearer lab-token", c.auth)
		var msg struct {
			Receiver string `json:"receiver"`
			Alerts   []struct {
				Labels map[string]string `json:"labels"`
			} `json:"alerts"`
		}
		require.NoError(t, json.Unmarshal([]byte(c.body), &msg), c.body)
		require.Equal(t, alerts.RemediationReceiver, msg.Receiver)
		require.Len(t, msg.Alerts, 1)
		require.Equal(t, map[string]string{"alertname": "HostDown", "host": "n1"}, msg.Alerts[0].Labels)
	case <-time.After(30 * time.Second):
		t.Fatal("Alertmanager never called the remediation webhook")
	}
}
