package monlab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/monlab"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/lab/proc"
	"github.com/rackcloud/rackcloud/lab/srvtest"
	"github.com/rackcloud/rackcloud/monitor"
	"github.com/rackcloud/rackcloud/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The lab's Prometheus, configured by monlab, discovers a real server's
// hosts, BMCs, guests and boot services through its HTTP service discovery
// with an operator token, and the series it scrapes carry the host's
// labels, so that rules join them with rackcloud_host_info on host.
func TestPrometheusDiscoversThroughSD(t *testing.T) {
	labtest.Need(t, "prometheus", "prometheus-node-exporter", "promtool")
	ctx := context.Background()
	nePort, err := proc.FreePort()
	require.NoError(t, err)
	ne := "127.0.0.1:" + strconv.Itoa(nePort)
	// The node exporter stands in for a boot service's /metrics.
	s := srvtest.Start(t, monitor.Config{NodeExporterPort: nePort,
		BootServices: []monitor.BootService{{Name: "rack1", Address: ne, Region: "lab", Zone: "z1", Rack: "r1"}}})
	q := s.Pool()
	r := srvtest.Rack(t, q)
	// node-a's node exporter is the real one on loopback; node-b, in
	// maintenance, answers nowhere.
	_, err = store.CreateHost(ctx, q, rackcloud.Host{Meta: rackcloud.Meta{Name: "node-a"}, RackID: r.ID, Role: rackcloud.RoleDocker,
		State: rackcloud.HostReady, ProvisioningIPv4: "127.0.0.1",
		BMC: &rackcloud.BMC{Address: "127.0.0.1:9623", Protocol: rackcloud.BMCIPMI, Username: "admin"}})
	require.NoError(t, err)
	_, err = store.CreateHost(ctx, q, rackcloud.Host{Meta: rackcloud.Meta{Name: "node-b"}, RackID: r.ID, Role: rackcloud.RoleKVM,
		State: rackcloud.HostReady, Maintenance: true, ProvisioningIPv4: "127.0.0.2"})
	require.NoError(t, err)
	u, err := store.CreateUser(ctx, q, rackcloud.User{Meta: rackcloud.Meta{Name: "prometheus"}})
	require.NoError(t, err)
	_, secret, err := store.CreateToken(ctx, q, rackcloud.Token{Meta: rackcloud.Meta{Name: "prometheus"}, UserID: u.ID,
		Role: rackcloud.RoleOperator})
	require.NoError(t, err)

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "sd-token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(secret+"\n"), 0o600))
	st, err := monlab.Start(ctx, monlab.Config{Dir: dir, NodeExporterPort: nePort, ScrapeInterval: time.Second,
		RackcloudTargets: []string{s.Addr()}, SD: monlab.SDConfig{URL: "http://" + s.Addr(), TokenFile: tokenFile}})
	require.NoError(t, err)
	t.Cleanup(st.Stop)
	out, err := exec.Command("promtool", "check", "config", filepath.Join(dir, "prometheus.yml")).CombinedOutput()
	require.NoError(t, err, string(out))

	qctx, qcancel := context.WithTimeout(ctx, 60*time.Second)
	defer qcancel()
	res, err := monlab.WaitQuery(qctx, st.PrometheusURL, `up{job="rackcloud-hosts",host="node-a"} == 1`,
		func(r []monlab.Sample) bool { return len(r) == 1 })
	require.NoError(t, err, "Prometheus never scraped node-a's node exporter through SD")
	for k, v := range map[string]string{"instance": ne, "region": "lab", "zone": "z1", "rack": "r1", "role": "docker",
		"state": "ready", "maintenance": "false"} {
		require.Equal(t, v, res[0].Metric[k], k)
	}
	_, err = monlab.WaitQuery(qctx, st.PrometheusURL, `node_cpu_seconds_total{job="rackcloud-hosts",host="node-a"}`,
		func(r []monlab.Sample) bool { return len(r) > 0 })
	require.NoError(t, err, "node-a's node exporter series carry its host label")
	// The down host in maintenance joins rackcloud_host_info on host:
	// what a lifecycle-aware HostDown rule leaves out.
	res, err = monlab.WaitQuery(qctx, st.PrometheusURL,
		`(up{job="rackcloud-hosts"} == 0) and on(host) rackcloud_host_info{maintenance="true"}`,
		func(r []monlab.Sample) bool { return len(r) == 1 })
	require.NoError(t, err)
	require.Equal(t, "node-b", res[0].Metric["host"])
	_, err = monlab.WaitQuery(qctx, st.PrometheusURL, `up{job="rackcloud-boot",boot_service="rack1",zone="z1"} == 1`,
		func(r []monlab.Sample) bool { return len(r) == 1 })
	require.NoError(t, err, "the boot service is scraped through SD")

	// The BMC is discovered with its labels, and dropped: no exporter.
	labtest.Eventually(t, 30*time.Second, 250*time.Millisecond, "the BMC among the dropped targets", func() (bool, string) {
		resp, err := http.Get(st.PrometheusURL + "/api/v1/targets?state=dropped")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var body struct {
			Data struct {
				Dropped []struct {
					DiscoveredLabels map[string]string `json:"discoveredLabels"`
				} `json:"droppedTargets"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return false, err.Error()
		}
		for _, d := range body.Data.Dropped {
			l := d.DiscoveredLabels
			if strings.HasSuffix(l["__meta_url"], "/v1/sd/bmcs") && l["__address__"] == "127.0.0.1:9623" && l["__meta_rackcloud_host"] == "node-a" {
				return true, ""
			}
		}
		return false, fmt.Sprint(body.Data.Dropped)
	})
}
