package alerts_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/alerts"
	"github.com/rackcloud/rackcloud/lab/labtest"
)

func TestRenderPromtool(t *testing.T) {
	labtest.Need(t, "promtool")
	promtool, err := exec.LookPath("promtool")
	require.NoError(t, err)
	hot := rule(`max by (host) (rackcloud_bmc_up)`)
	hot.Scope, hot.ScopeID = rackcloud.AlertZone, "0b6f7c1e-8a51-4c2e-9d7e-3b5f0a1c2d3e"
	plain := rule("up")
	plain.Name = "up-low"
	out, err := alerts.Render([]rackcloud.AlertRule{hot, plain})
	require.NoError(t, err)
	require.Contains(t, string(out), `zone="0b6f7c1e-8a51-4c2e-9d7e-3b5f0a1c2d3e"`)

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yml"), out, 0o644))
	b, err := exec.Command(promtool, "check", "rules", filepath.Join(dir, "rules.yml")).CombinedOutput()
	require.NoError(t, err, "%s", b)

	tests, err := os.ReadFile("testdata/defaults_test.yml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "defaults_test.yml"), tests, 0o644))
	cmd := exec.Command(promtool, "test", "rules", "defaults_test.yml")
	cmd.Dir = dir
	b, err = cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
}
