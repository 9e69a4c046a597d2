package alerts_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/alerts"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/monlab"
)

// A rendered threshold that holds appears as a rule in the real Prometheus
// after a reload and fires.
func TestRuleLoadsAndFires(t *testing.T) {
	labtest.Need(t, "prometheus", "prometheus-alertmanager")
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules")
	s, err := monlab.Start(context.Background(), monlab.Config{Dir: dir, ScrapeInterval: time.Second,
		RuleFiles: []string{rules + "/*.yml"}, NoNodeExporter: true})
	require.NoError(t, err)
	t.Cleanup(s.Stop)

	r := rule("vector(1)")
	r.Name, r.Op, r.Threshold, r.For = "always-on", ">", 0, 0
	out, err := alerts.Render([]rackcloud.AlertRule{r})
	require.NoError(t, err)
	require.NoError(t, mkdir(rules))
	require.NoError(t, alerts.WriteRuleFile(rules, "rackcloud.yml", out))
	require.NoError(t, alerts.Reload(context.Background(), http.DefaultClient, s.PrometheusURL))

	labtest.Eventually(t, 30*time.Second, 250*time.Millisecond, "rule in Prometheus", func() (bool, string) {
		b := get(t, s.PrometheusURL+"/api/v1/rules")
		return strings.Contains(b, `"name":"always-on"`), b
	})
	labtest.Eventually(t, 30*time.Second, 250*time.Millisecond, "alert firing in Prometheus", func() (bool, string) {
		b := get(t, s.PrometheusURL+"/api/v1/alerts")
		return strings.Contains(b, `"alertname":"always-on"`) && strings.Contains(b, `"state":"firing"`), b
	})
	// And it reaches Alertmanager. The reload above empties Prometheus 2.42's
	// list of Alertmanagers until its next discovery tick and the first send
	// is dropped; monlab's short resend delay sends it again soon after.
	am, err := alerts.NewAM([]string{s.AlertmanagerURL}, nil)
	require.NoError(t, err)
	labtest.Eventually(t, 30*time.Second, 250*time.Millisecond, "alert in Alertmanager", func() (bool, string) {
		got, err := am.List(context.Background(), []string{`alertname="always-on"`})
		if err != nil {
			return false, err.Error()
		}
		return len(got) == 1 && got[0].State == "active", fmt.Sprintf("%+v", got)
	})
}
