package monitor_test

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os/exec"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/monitor"
	"github.com/rackcloud/rackcloud/store"
)

func res(cpu int, mem, disk int64) rackcloud.Resources {
	return rackcloud.Resources{CPUCores: cpu, MemoryMiB: mem, DiskGiB: disk}
}

func fixedInventory(hosts []store.MonitorHost, guests []store.MonitorGuest) *monitor.Inventory {
	return monitor.NewInventory(func(context.Context) ([]store.MonitorHost, []store.MonitorGuest, error) {
		return hosts, guests, nil
	}, 0, nil)
}

func TestFleetCountsTheSnapshot(t *testing.T) {
	t.Parallel()
	hosts := []store.MonitorHost{
		{ID: "a", Region: "eu", Zone: "z1", Role: rackcloud.RoleKVM, State: rackcloud.HostReady,
			Capacity: res(32, 65536, 1000), Used: res(8, 16384, 100)},
		{ID: "b", Region: "eu", Zone: "z1", Role: rackcloud.RoleKVM, State: rackcloud.HostReady, Maintenance: true,
			Capacity: res(32, 65536, 1000), Used: res(0, 0, 0)},
		{ID: "c", Region: "eu", Zone: "z1", Role: rackcloud.RoleDocker, State: rackcloud.HostReady,
			Capacity: res(4, 1024, 10), Used: res(6, 512, 1)}, // oversold CPU: free stays 0
		{ID: "d", Region: "eu", Zone: "z2", State: rackcloud.HostDiscovered},
	}
	guests := []store.MonitorGuest{
		{ID: "g1", Kind: rackcloud.GuestVM, State: rackcloud.GuestRunning},
		{ID: "g2", Kind: rackcloud.GuestVM, State: rackcloud.GuestRunning},
		{ID: "g3", Kind: rackcloud.GuestContainer, State: rackcloud.GuestFailed},
	}
	inv := fixedInventory(hosts, guests)
	_, err := inv.Snapshot(context.Background())
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	reg.MustRegister(monitor.NewFleet(inv))

	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"rackcloud_fleet_capacity_free", map[string]string{"zone": "z1", "role": "docker", "resource": "cpu_cores"}, 0},
		{"rackcloud_fleet_capacity_free", map[string]string{"zone": "z1", "role": "kvm", "resource": "cpu_cores"}, 24},
		{"rackcloud_fleet_capacity_free", map[string]string{"zone": "z1", "role": "kvm", "resource": "memory_bytes"}, 48 << 30},
		{"rackcloud_fleet_capacity_free", map[string]string{"zone": "z1", "role": "docker", "resource": "disk_bytes"}, 9 << 30},
		{"rackcloud_fleet_guests", map[string]string{"kind": "vm", "state": "running"}, 2},
		{"rackcloud_fleet_guests", map[string]string{"kind": "container", "state": "failed"}, 1},
	} {
		require.Equal(t, c.want, gauge(t, reg, c.name, c.labels), "%s%v", c.name, c.labels)
	}
	require.Equal(t, 2.0, gauge(t, reg, "rackcloud_fleet_hosts", map[string]string{"zone": "z1", "role": "kvm", "state": "ready"}))
	require.Equal(t, 0.0, gauge(t, reg, "rackcloud_fleet_hosts", map[string]string{"zone": "z1", "role": "bm", "state": "failed"}))
	require.Equal(t, 1.0, gauge(t, reg, "rackcloud_fleet_hosts", map[string]string{"zone": "z2", "role": "none", "state": "discovered"}))
	require.Equal(t, 64.0, gauge(t, reg, "rackcloud_fleet_capacity_sellable", map[string]string{"zone": "z1", "role": "kvm", "resource": "cpu_cores"}))
	require.Equal(t, 6.0, gauge(t, reg, "rackcloud_fleet_capacity_used", map[string]string{"zone": "z1", "role": "docker", "resource": "cpu_cores"}))
	require.Equal(t, 1.0, gauge(t, reg, "rackcloud_monitor_collector_success", map[string]string{"collector": "fleet"}))

	// The names and help pass promtool's lint.
	promtoolCheck(t, reg)
}

// promtoolCheck runs promtool check metrics (names, units, help) on what
// reg exports.
func promtoolCheck(t *testing.T, reg prometheus.Gatherer) {
	t.Helper()
	labtest.Need(t, "promtool")
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = bytes.NewReader(rec.Body.Bytes())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics: %s\n%s", out, rec.Body.String())
}

func TestFleetWithoutASnapshotSaysSo(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	defer close(block)
	inv := monitor.NewInventory(func(ctx context.Context) ([]store.MonitorHost, []store.MonitorGuest, error) {
		<-block
		return nil, nil, nil
	}, 0, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(monitor.NewFleet(inv))
	// The scrape does not wait for the load.
	require.Equal(t, 0.0, gauge(t, reg, "rackcloud_monitor_collector_success", map[string]string{"collector": "fleet"}))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		require.NotEqual(t, "rackcloud_fleet_hosts", mf.GetName())
	}
}

// gauge returns the value of the gauge of name whose labels include want.
func gauge(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	return sample(t, g, name, want).GetGauge().GetValue()
}

// sample returns the series of name whose labels include want.
func sample(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) *dto.Metric {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue series
				}
			}
			return m
		}
	}
	t.Fatalf("no %s%v", name, want)
	return nil
}
