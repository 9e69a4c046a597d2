package monitor_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/dockerd"
	"github.com/rackcloud/rackcloud/lab/guestimg"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/virtd"
	"github.com/rackcloud/rackcloud/monitor"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/vmctl"
)

// A container run by the Docker driver on a real dockerd: its stats reach
// the collector under cAdvisor's names with the guest's labels, a host
// that does not answer says so, and a scrape never waits for a poll.
func TestGuestStatsFromRealDockerd(t *testing.T) {
	t.Parallel()
	labtest.Need(t, dockerd.Binary, "nsenter", "promtool")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	n := labtest.Net(t, "rcmon", "10.64.0.1/24")
	dir, err := os.MkdirTemp("", "rcmo")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	d, err := dockerd.Start(ctx, dockerd.Config{Dir: dir, Netns: n})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Stop()) })

	path, sum, size, err := guestimg.Container("")
	require.NoError(t, err)
	img := vmctl.Image{ID: "11111111-2222-4333-8444-555555555555", Format: rackcloud.FormatDockerArchive, Checksum: sum, Size: size,
		Open: func(context.Context) (io.ReadCloser, error) { return os.Open(path) }}
	drv := &vmctl.Docker{}
	defer drv.Close()
	tg := vmctl.Target{HostID: "dk1", Role: rackcloud.RoleDocker, Endpoint: d.Endpoint}
	s := vmctl.Spec{GuestID: "aaaaaaaa-2222-4333-8444-555555555555", Name: "web", ProjectID: "p1", Kind: rackcloud.GuestContainer,
		Flavor: rackcloud.Resources{CPUCores: 1, MemoryMiB: 64, DiskGiB: 1}, Image: img}
	require.NoError(t, drv.Prepare(ctx, tg, s))
	_, err = drv.Create(ctx, tg, s)
	require.NoError(t, err)
	require.NoError(t, drv.Start(ctx, tg, s))

	inv := fixedInventory([]store.MonitorHost{
		{ID: "dk1", Name: "docker-1", Role: rackcloud.RoleDocker, State: rackcloud.HostReady, Endpoint: d.Endpoint},
		{ID: "dk2", Name: "docker-2", Role: rackcloud.RoleDocker, State: rackcloud.HostReady, Endpoint: "unix://" + dir + "/nothing.sock"},
		{ID: "dk3", Name: "docker-3", Role: rackcloud.RoleDocker, State: rackcloud.HostDiscovered},
	}, []store.MonitorGuest{
		{ID: s.GuestID, Name: "web", Project: "shop", ProjectID: "p1", Kind: rackcloud.GuestContainer, State: rackcloud.GuestRunning, HostID: "dk1"},
	})
	reg, resolved := statsRegistry(t, inv, rackcloud.RoleDocker, drv)

	web := map[string]string{"guest": "web", "guest_id": s.GuestID, "project": "shop", "host": "docker-1"}
	labtest.Eventually(t, 60*time.Second, 100*time.Millisecond, "the container's stats", func() (bool, string) {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		have := map[string]bool{}
		for _, mf := range mfs {
			have[mf.GetName()] = true
		}
		if !have["container_cpu_usage_seconds_total"] || !have["rackcloud_guest_stats_up"] {
			return false, fmt.Sprint(have)
		}
		return counter(t, reg, "container_cpu_usage_seconds_total", web) > 0 &&
			gauge(t, reg, "container_memory_working_set_bytes", web) > 0, fmt.Sprint(have)
	})
	require.Equal(t, 1.0, gauge(t, reg, "rackcloud_guest_stats_up", map[string]string{"host": "docker-1", "role": "docker"}))
	require.Equal(t, 0.0, gauge(t, reg, "rackcloud_guest_stats_up", map[string]string{"host": "docker-2"}))
	require.Equal(t, 1.0, gauge(t, reg, "rackcloud_monitor_collector_success", map[string]string{"collector": "guest_stats"}))
	require.LessOrEqual(t, resolved.Load(), int32(3), "targets are resolved once, not every round")

	promtoolCheck(t, reg)

	// A stopped container drops out of the stats.
	require.NoError(t, drv.Stop(ctx, tg, s, 5*time.Second))
	labtest.Eventually(t, 30*time.Second, 100*time.Millisecond, "the stopped container's stats to go", func() (bool, string) {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "container_cpu_usage_seconds_total" {
				return false, mf.String()
			}
		}
		return true, ""
	})
}

// statsRegistry loads inv and registers a GuestStats over it that reads
// hosts of role with r, polling every 100 ms; resolved counts the targets
// it resolved.
func statsRegistry(t *testing.T, inv *monitor.Inventory, role rackcloud.HostRole, r vmctl.StatsReader) (*prometheus.Registry, *atomic.Int32) {
	t.Helper()
	_, err := inv.Snapshot(context.Background())
	require.NoError(t, err)
	var resolved atomic.Int32
	gs := monitor.NewGuestStats(monitor.GuestStatsConfig{Inventory: inv,
		Readers: map[rackcloud.HostRole]vmctl.StatsReader{role: r},
		Target: func(_ context.Context, h rackcloud.Host) (vmctl.Target, error) {
			resolved.Add(1)
			return vmctl.Target{HostID: h.ID, Role: h.Role, Endpoint: h.Endpoint}, nil
		},
		Interval: 100 * time.Millisecond})
	reg := prometheus.NewRegistry()
	reg.MustRegister(gs)
	return reg, &resolved
}

// counter returns the value of the counter of name whose labels include
// want.
func counter(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	return sample(t, g, name, want).GetCounter().GetValue()
}

// A VM run by the libvirt driver on a real libvirtd: its stats reach the
// collector under prometheus-libvirt-exporter's names.
func TestGuestStatsFromRealLibvirtd(t *testing.T) {
	t.Parallel()
	labtest.Need(t, "libvirtd", "qemu-system-x86_64", "promtool")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	n := labtest.Net(t, "rcmlv", "10.64.1.1/24")
	d, err := virtd.Start(ctx, virtd.Config{Dir: filepath.Join(t.TempDir(), "virtd"), Netns: n})
	require.NoError(t, err)
	t.Cleanup(d.Stop)
	path, sum, size, err := guestimg.VM(filepath.Join(os.TempDir(), "rackcloud-guestimg"))
	require.NoError(t, err)
	drv := &vmctl.Libvirt{DomainType: "qemu"}
	t.Cleanup(func() { _ = drv.Close() })
	tg := vmctl.Target{HostID: "kvm1", Role: rackcloud.RoleKVM, Endpoint: d.URI()}
	s := vmctl.Spec{GuestID: "8b3e4f58-7c0a-4f2d-9f70-3e3f4c5d6e7f", Name: "tiny", ProjectID: "p1", Kind: rackcloud.GuestVM,
		Flavor: rackcloud.Resources{CPUCores: 1, MemoryMiB: 256, DiskGiB: 1},
		Image: vmctl.Image{ID: "vm-raw", Format: rackcloud.FormatRaw, Checksum: sum, Size: size,
			Open: func(context.Context) (io.ReadCloser, error) { return os.Open(path) }}}
	require.NoError(t, drv.Prepare(ctx, tg, s))
	_, err = drv.Create(ctx, tg, s)
	require.NoError(t, err)
	require.NoError(t, drv.Start(ctx, tg, s))

	inv := fixedInventory([]store.MonitorHost{{ID: "kvm1", Name: "kvm-1", Role: rackcloud.RoleKVM, State: rackcloud.HostReady, Endpoint: d.URI()}},
		[]store.MonitorGuest{{ID: s.GuestID, Name: "tiny", Project: "shop", ProjectID: "p1", Kind: rackcloud.GuestVM,
			State: rackcloud.GuestRunning, HostID: "kvm1"}})
	reg, _ := statsRegistry(t, inv, rackcloud.RoleKVM, drv)
	tiny := map[string]string{"guest": "tiny", "guest_id": s.GuestID, "project": "shop", "host": "kvm-1"}
	labtest.Eventually(t, 90*time.Second, 200*time.Millisecond, "the VM's stats", func() (bool, string) {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "libvirt_domain_block_stats_read_bytes_total" {
				return counter(t, reg, "libvirt_domain_block_stats_read_bytes_total", tiny) > 0 &&
					counter(t, reg, "libvirt_domain_info_cpu_time_seconds_total", tiny) > 0, mf.String()
			}
		}
		return false, "no libvirt_domain_* yet"
	})
	require.Positive(t, gauge(t, reg, "libvirt_domain_info_memory_usage_bytes", tiny))
	promtoolCheck(t, reg)
	require.NoError(t, drv.Delete(ctx, tg, s))
}
