package monitor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/lab/proc"
	"github.com/rackcloud/rackcloud/lab/srvtest"
	"github.com/rackcloud/rackcloud/monitor"
	"github.com/rackcloud/rackcloud/store"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fleet is a running server with a small inventory.
type fleet struct {
	t                  *testing.T
	base               string
	pool               store.Querier
	admin, viewer      string
	project, other     string
	hostA, hostB       rackcloud.Host
	nodeExporterPort   int
	bootAddr           string
	guestWeb, guestOff rackcloud.Guest
}

func startFleet(t *testing.T, nodeExporterPort int, bootAddr string) *fleet {
	t.Helper()
	s := srvtest.Start(t, monitor.Config{NodeExporterPort: nodeExporterPort,
		BootServices: []monitor.BootService{{Name: "rack1", Address: bootAddr, Region: "lab", Zone: "z1", Rack: "r1"}}})
	f := &fleet{t: t, base: "http://" + s.Addr(), pool: s.Pool(), nodeExporterPort: nodeExporterPort, bootAddr: bootAddr}
	f.seed()
	return f
}

func (f *fleet) seed() {
	t, ctx, q := f.t, context.Background(), f.pool
	r := srvtest.Rack(t, q)
	var err error
	// A ready docker host whose node exporter is the real one on
	// loopback; a kvm host in maintenance reached through its endpoint.
	f.hostA, err = store.CreateHost(ctx, q, rackcloud.Host{Meta: rackcloud.Meta{Name: "node-a", Labels: rackcloud.Labels{"ssd": "true", "tier/x": "gold"}},
		RackID: r.ID, Role: rackcloud.RoleDocker, State: rackcloud.HostReady, ProvisioningIPv4: "127.0.0.1",
		BMC:       &rackcloud.BMC{Address: "127.0.0.1:9623", Protocol: rackcloud.BMCIPMI, Username: "admin"},
		Resources: rackcloud.Resources{CPUCores: 8, MemoryMiB: 16384, DiskGiB: 100}})
	require.NoError(t, err)
	f.hostB, err = store.CreateHost(ctx, q, rackcloud.Host{Meta: rackcloud.Meta{Name: "node-b"}, RackID: r.ID,
		Role: rackcloud.RoleKVM, State: rackcloud.HostReady, Maintenance: true,
		Resources: rackcloud.Resources{CPUCores: 4, MemoryMiB: 8192, DiskGiB: 50}})
	require.NoError(t, err)
	require.NoError(t, store.SetHostEndpoint(ctx, q, f.hostB.ID, "qemu+tls://127.0.0.2:16514/system"))
	// A discovered host has no address: it is not a node exporter target.
	_, err = store.CreateHost(ctx, q, rackcloud.Host{Meta: rackcloud.Meta{Name: "new-one"}, MACs: []string{"52:54:00:00:00:01"}})
	require.NoError(t, err)

	p, err := store.CreateProject(ctx, q, rackcloud.Project{Meta: rackcloud.Meta{Name: "shop"}})
	require.NoError(t, err)
	f.project = p.ID
	o, err := store.CreateProject(ctx, q, rackcloud.Project{Meta: rackcloud.Meta{Name: "other"}})
	require.NoError(t, err)
	f.other = o.ID
	for _, id := range []string{p.ID, o.ID} {
		_, err = store.SetQuota(ctx, q, id, 0, rackcloud.Resources{CPUCores: 100, MemoryMiB: 1 << 20, DiskGiB: 1 << 10}, 10)
		require.NoError(t, err)
	}
	im, err := store.CreateImage(ctx, q, rackcloud.Image{Meta: rackcloud.Meta{Name: "img"}, URL: "http://127.0.0.1:1/img",
		Checksum: "sha256:" + strings.Repeat("0", 64), Format: rackcloud.FormatDockerArchive})
	require.NoError(t, err)
	guest := func(name, project string, labels rackcloud.Labels) rackcloud.Guest {
		g, err := store.CreateGuest(ctx, q, rackcloud.Guest{Meta: rackcloud.Meta{Name: name, Labels: labels}, ProjectID: project,
			Kind: rackcloud.GuestContainer, Flavor: rackcloud.Resources{CPUCores: 2, MemoryMiB: 1024, DiskGiB: 1}, ImageID: im.ID})
		require.NoError(t, err)
		return g
	}
	// The web guest publishes its metrics on its host's node exporter
	// port (so that Prometheus finds something that answers).
	f.guestWeb = guest("web", p.ID, rackcloud.Labels{monitor.GuestMetricsPort: strconv.Itoa(f.nodeExporterPort), "app": "web"})
	_, err = q.Exec(ctx, `UPDATE guests SET host_id = $1, state = 'running' WHERE id = $2`, f.hostA.ID, f.guestWeb.ID)
	require.NoError(t, err)
	f.guestOff = guest("quiet", p.ID, nil) // exposes nothing
	guest("elsewhere", o.ID, rackcloud.Labels{monitor.GuestMetricsAddress: "127.0.0.3:8080"})

	_, f.admin, err = store.Bootstrap(ctx, q, store.BootstrapOptions{Force: true, TokenName: "prom"})
	require.NoError(t, err)
	u, err := store.CreateUser(ctx, q, rackcloud.User{Meta: rackcloud.Meta{Name: "watcher"}})
	require.NoError(t, err)
	_, f.viewer, err = store.CreateToken(ctx, q, rackcloud.Token{Meta: rackcloud.Meta{Name: "v"}, UserID: u.ID,
		Role: rackcloud.RoleViewer, ProjectIDs: []string{p.ID}})
	require.NoError(t, err)
}

func (f *fleet) get(path, token string) (int, string) {
	f.t.Helper()
	req, err := http.NewRequest("GET", f.base+path, nil)
	require.NoError(f.t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(f.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(f.t, err)
	return resp.StatusCode, string(b)
}

func (f *fleet) sd(kind, query, token string) []monitor.TargetGroup {
	f.t.Helper()
	var groups []monitor.TargetGroup
	labtest.Eventually(f.t, 10*time.Second, 50*time.Millisecond, "SD "+kind+" to answer", func() (bool, string) {
		code, body := f.get("/v1/sd/"+kind+query, token)
		if code != 200 {
			return false, fmt.Sprint(code, body)
		}
		require.NoError(f.t, json.Unmarshal([]byte(body), &groups))
		return true, ""
	})
	return groups
}

// byTarget indexes groups by their one target.
func byTarget(t *testing.T, groups []monitor.TargetGroup) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, g := range groups {
		require.Len(t, g.Targets, 1)
		out[g.Targets[0]] = g.Labels
	}
	return out
}

func TestSDAnswersWithLabelsAndChecksTokens(t *testing.T) {
	t.Parallel()
	f := startFleet(t, 9100, "127.0.0.1:8080")

	code, _ := f.get("/v1/sd/hosts", "")
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = f.get("/v1/sd/hosts", store.TokenPrefix+"nope")
	require.Equal(t, http.StatusUnauthorized, code)
	code, body := f.get("/v1/sd/hosts", f.viewer)
	require.Equal(t, http.StatusForbidden, code, body)
	code, _ = f.get("/v1/sd/nothing", f.admin)
	require.Equal(t, http.StatusNotFound, code)

	hosts := byTarget(t, f.sd("hosts", "", f.admin))
	want := map[string]map[string]string{
		"127.0.0.1:9100": {"__meta_rackcloud_region": "lab", "__meta_rackcloud_zone": "z1", "__meta_rackcloud_rack": "r1",
			"__meta_rackcloud_host": "node-a", "__meta_rackcloud_host_id": f.hostA.ID, "__meta_rackcloud_role": "docker",
			"__meta_rackcloud_state": "ready", "__meta_rackcloud_power": "unknown", "__meta_rackcloud_maintenance": "false",
			"__meta_rackcloud_address": "127.0.0.1", "__meta_rackcloud_label_ssd": "true", "__meta_rackcloud_label_tier_x": "gold"},
		"127.0.0.2:9100": {"__meta_rackcloud_region": "lab", "__meta_rackcloud_zone": "z1", "__meta_rackcloud_rack": "r1",
			"__meta_rackcloud_host": "node-b", "__meta_rackcloud_host_id": f.hostB.ID, "__meta_rackcloud_role": "kvm",
			"__meta_rackcloud_state": "ready", "__meta_rackcloud_power": "unknown", "__meta_rackcloud_maintenance": "true",
			"__meta_rackcloud_address": "127.0.0.2"},
	}
	require.Empty(t, cmp.Diff(want, hosts))

	require.Equal(t, []string{"127.0.0.2:9100"}, targets(f.sd("hosts", "?role=kvm", f.admin)))
	require.Empty(t, targets(f.sd("hosts", "?state=failed,discovered", f.admin)))

	bmcs := byTarget(t, f.sd("bmcs", "", f.admin))
	require.Len(t, bmcs, 1)
	require.Equal(t, "ipmi", bmcs["127.0.0.1:9623"]["__meta_rackcloud_bmc_protocol"])
	require.Equal(t, "node-a", bmcs["127.0.0.1:9623"]["__meta_rackcloud_host"])

	guests := byTarget(t, f.sd("guests", "", f.admin))
	require.Len(t, guests, 2, "the guest with no metrics label is not a target")
	web := guests["127.0.0.1:9100"]
	require.Equal(t, map[string]string{"__meta_rackcloud_guest": "web", "__meta_rackcloud_guest_id": f.guestWeb.ID,
		"__meta_rackcloud_kind": "container", "__meta_rackcloud_state": "running", "__meta_rackcloud_project": "shop",
		"__meta_rackcloud_project_id": f.project, "__meta_rackcloud_region": "lab", "__meta_rackcloud_zone": "z1",
		"__meta_rackcloud_rack": "r1", "__meta_rackcloud_host": "node-a", "__meta_rackcloud_host_id": f.hostA.ID,
		"__meta_rackcloud_label_app": "web", "__meta_rackcloud_label_metrics_port": "9100"}, web)
	require.Equal(t, "other", guests["127.0.0.3:8080"]["__meta_rackcloud_project"])
	// A viewer sees its projects' guests only.
	require.Equal(t, []string{"127.0.0.1:9100"}, targets(f.sd("guests", "", f.viewer)))
	require.Equal(t, []string{"127.0.0.3:8080"}, targets(f.sd("guests", "?project=other", f.admin)))

	// The server's /metrics has the fleet's counts from the same snapshot.
	labtest.Eventually(t, 10*time.Second, 50*time.Millisecond, "fleet metrics on /metrics", func() (bool, string) {
		_, body := f.get("/metrics", "")
		return strings.Contains(body, `rackcloud_fleet_hosts{region="lab",role="docker",state="ready",zone="z1"} 1`) &&
			strings.Contains(body, `rackcloud_fleet_guests{kind="container",state="running"} 1`), body
	})

	boot := byTarget(t, f.sd("boot", "", f.admin))
	require.Equal(t, map[string]map[string]string{"127.0.0.1:8080": {"__meta_rackcloud_boot_service": "rack1",
		"__meta_rackcloud_region": "lab", "__meta_rackcloud_zone": "z1", "__meta_rackcloud_rack": "r1"}}, boot)
}

func targets(groups []monitor.TargetGroup) []string {
	var out []string
	for _, g := range groups {
		out = append(out, g.Targets...)
	}
	return out
}

// TestPrometheusDiscoversTheFleet runs the real Prometheus with
// http_sd_configs and a bearer token against the server: it finds the
// hosts, guests and boot services with their labels, and scrapes the real
// node exporter it found.
func TestPrometheusDiscoversTheFleet(t *testing.T) {
	t.Parallel()
	labtest.Need(t, "prometheus", "prometheus-node-exporter")
	dir := t.TempDir()
	nePort, err := proc.FreePort()
	require.NoError(t, err)
	ne := startProc(t, dir, "node-exporter", "prometheus-node-exporter",
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(nePort), "--no-collector.systemd")
	require.NoError(t, ne.WaitTCP(context.Background(), "127.0.0.1:"+strconv.Itoa(nePort)))
	f := startFleet(t, nePort, "127.0.0.1:"+strconv.Itoa(nePort))

	tokenFile := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(f.admin+"\n"), 0o600))
	// authorization without a type: Debian's Prometheus then sends the
	// bare token (no "Bearer "), which SD takes too.
	var jobs strings.Builder
	for _, kind := range monitor.SDKinds {
		fmt.Fprintf(&jobs, `  - job_name: rackcloud-%s
    http_sd_configs:
      - url: %s/v1/sd/%s
        refresh_interval: 1s
        authorization:
          credentials_file: %s
    relabel_configs:
      - action: labelmap
        regex: __meta_rackcloud_(.+)
`, kind, f.base, kind, tokenFile)
	}
	conf := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(conf, []byte("global:\n  scrape_interval: 1s\nscrape_configs:\n"+jobs.String()), 0o644))
	promPort, err := proc.FreePort()
	require.NoError(t, err)
	prom := "http://127.0.0.1:" + strconv.Itoa(promPort)
	p := startProc(t, dir, "prometheus", "prometheus", "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(promPort))
	require.NoError(t, p.WaitTCP(context.Background(), "127.0.0.1:"+strconv.Itoa(promPort)))

	type target struct {
		Labels           map[string]string `json:"labels"`
		DiscoveredLabels map[string]string `json:"discoveredLabels"`
		ScrapePool       string            `json:"scrapePool"`
		Health           string            `json:"health"`
	}
	var active []target
	labtest.Eventually(t, 60*time.Second, 250*time.Millisecond, "Prometheus to discover and scrape the fleet", func() (bool, string) {
		resp, err := http.Get(prom + "/api/v1/targets?state=active")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var out struct {
			Data struct {
				ActiveTargets []target `json:"activeTargets"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return false, err.Error()
		}
		active = out.Data.ActiveTargets
		// node-a's exporter, the web guest (same exporter) and the boot
		// service (same again) answer; node-b, the BMC and the other
		// project's guest are discovered but need not answer.
		up := map[string]bool{}
		for _, a := range active {
			if a.Health == "up" {
				up[a.ScrapePool] = true
			}
		}
		return len(active) == 6 && up["rackcloud-hosts"] && up["rackcloud-guests"] && up["rackcloud-boot"],
			fmt.Sprintf("%d active, up %v; %s", len(active), up, p.LogTail(5))
	})
	find := func(pool, key, value string) target {
		for _, a := range active {
			if a.ScrapePool == pool && a.Labels[key] == value {
				return a
			}
		}
		t.Fatalf("no %s target with %s=%s in %+v", pool, key, value, active)
		return target{}
	}
	a := find("rackcloud-hosts", "host", "node-a")
	require.Equal(t, "up", a.Health)
	for k, v := range map[string]string{"instance": "127.0.0.1:" + strconv.Itoa(nePort), "region": "lab", "zone": "z1",
		"rack": "r1", "role": "docker", "state": "ready", "host_id": f.hostA.ID, "label_ssd": "true", "label_tier_x": "gold"} {
		require.Equal(t, v, a.Labels[k], k)
	}
	require.Equal(t, "true", find("rackcloud-hosts", "host", "node-b").Labels["maintenance"])
	web := find("rackcloud-guests", "guest", "web")
	require.Equal(t, "shop", web.Labels["project"])
	require.Equal(t, "up", web.Health)
	require.Equal(t, "ipmi", find("rackcloud-bmcs", "host", "node-a").Labels["bmc_protocol"])
	require.Equal(t, "up", find("rackcloud-boot", "boot_service", "rack1").Health)
}

func startProc(t *testing.T, dir, name, bin string, args ...string) *proc.Process {
	t.Helper()
	path, err := exec.LookPath(bin)
	require.NoError(t, err)
	p, err := proc.Start(proc.Spec{Name: name, Path: path, Args: args, Log: filepath.Join(dir, name+".log")})
	require.NoError(t, err)
	t.Cleanup(func() { p.Stop(syscall.SIGTERM, 5*time.Second) })
	return p
}
