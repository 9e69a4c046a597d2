package monitor_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/monitor"
	"github.com/rackcloud/rackcloud/provisioner"
	"github.com/rackcloud/rackcloud/store"
)

func TestHostInfoFromTheSnapshot(t *testing.T) {
	t.Parallel()
	hourAgo := time.Now().Add(-time.Hour)
	hosts := []store.MonitorHost{
		{ID: "a", Name: "node-a", Region: "eu", Zone: "z1", Rack: "r1", Role: rackcloud.RoleKVM, State: rackcloud.HostReady,
			LastHeartbeat: hourAgo},
		{ID: "b", Name: "node-b", Region: "eu", Zone: "z1", Rack: "r2", State: rackcloud.HostProvisioning,
			TaskKind: rackcloud.KindHostProvision, TaskStep: "await-install", StepSince: hourAgo},
	}
	inv := fixedInventory(hosts, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(monitor.NewHostInfo(inv))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	require.Empty(t, mfs, "no series before the first load")
	_, err = inv.Snapshot(context.Background())
	require.NoError(t, err)

	require.Equal(t, 1.0, gauge(t, reg, "rackcloud_host_info", map[string]string{"host": "node-a", "host_id": "a", "region": "eu",
		"zone": "z1", "rack": "r1", "role": "kvm", "state": "ready", "maintenance": "false"}))
	require.Equal(t, 1.0, gauge(t, reg, "rackcloud_host_info", map[string]string{"host": "node-b", "role": "none", "state": "provisioning"}))
	// An hour, give or take what a slow machine adds.
	require.InDelta(t, 3600, gauge(t, reg, "rackcloud_host_heartbeat_age_seconds", map[string]string{"host": "node-a"}), 600)
	require.InDelta(t, 3600, gauge(t, reg, "rackcloud_host_step_age_seconds",
		map[string]string{"host": "node-b", "kind": rackcloud.KindHostProvision, "step": "await-install"}), 600)
	mfs, err = reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "rackcloud_host_info" {
			require.Len(t, mf.GetMetric(), 1, "%s: only hosts that have one", mf.GetName())
		}
	}
	promtoolCheck(t, reg)
}

// A heartbeat newer than the snapshot shows at once when Heartbeats is
// set (the HostDown alert must not read a live host's age as stale); an
// older one, or a failing read, leaves the snapshot's.
func TestHostInfoHeartbeatsFresherThanTheSnapshot(t *testing.T) {
	t.Parallel()
	hourAgo := time.Now().Add(-time.Hour)
	inv := fixedInventory([]store.MonitorHost{
		{ID: "a", Name: "node-a", State: rackcloud.HostReady, LastHeartbeat: hourAgo},
		{ID: "b", Name: "node-b", State: rackcloud.HostReady, LastHeartbeat: hourAgo},
	}, nil)
	_, err := inv.Snapshot(context.Background())
	require.NoError(t, err)
	hi := monitor.NewHostInfo(inv)
	fail := false
	hi.Heartbeats = func(context.Context) (map[string]time.Time, error) {
		if fail {
			return nil, fmt.Errorf("database down")
		}
		return map[string]time.Time{"a": time.Now(), "b": hourAgo.Add(-time.Hour)}, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(hi)
	require.Less(t, gauge(t, reg, "rackcloud_host_heartbeat_age_seconds", map[string]string{"host": "node-a"}), 60.0)
	require.InDelta(t, 3600, gauge(t, reg, "rackcloud_host_heartbeat_age_seconds", map[string]string{"host": "node-b"}), 600)
	fail = true
	time.Sleep(monitor.HeartbeatTTL) // let the cache expire (no assertion on time)
	require.InDelta(t, 3600, gauge(t, reg, "rackcloud_host_heartbeat_age_seconds", map[string]string{"host": "node-a"}), 600,
		"a failing read falls back on the snapshot")
}

// The server exports host info read from the database: the heartbeat and
// the active task's step come from the inventory query.
func TestServerExportsHostInfo(t *testing.T) {
	t.Parallel()
	f := startFleet(t, 9100, "127.0.0.1:8080")
	ctx := context.Background()
	require.NoError(t, store.RecordHeartbeat(ctx, f.pool, f.hostA.ID, time.Now().Add(-time.Hour)))
	_, err := f.pool.Exec(ctx, `INSERT INTO tasks (id, root_id, kind, target, state, step, step_name, started_at)
		VALUES (gen_random_uuid(), gen_random_uuid(), $1, 'host/' || $2, 'running', 2, $3, now() - interval '2 hours')`,
		rackcloud.KindHostProvision, f.hostB.ID, provisioner.StepAwaitInstall)
	require.NoError(t, err)
	labtest.Eventually(t, 20*time.Second, 50*time.Millisecond, "host info on /metrics", func() (bool, string) {
		_, body := f.get("/metrics", "")
		return strings.Contains(body, fmt.Sprintf(`rackcloud_host_info{host="node-a",host_id="%s",maintenance="false",rack="r1",region="lab",role="docker",state="ready",zone="z1"} 1`, f.hostA.ID)) &&
			strings.Contains(body, `rackcloud_host_heartbeat_age_seconds{host="node-a"} 36`) &&
			strings.Contains(body, `rackcloud_host_step_age_seconds{host="node-b",kind="`+rackcloud.KindHostProvision+`",step="await-install"} 72`) &&
			// What ProvisioningStuck compares the age with, from the
			// server's task engine, under the same kind and step.
			strings.Contains(body, fmt.Sprintf(`rackcloud_tasks_step_wait_timeout_seconds{kind="%s",step="%s"} %v`,
				rackcloud.KindHostProvision, provisioner.StepAwaitInstall, provisioner.DefaultInstallTimeout.Seconds())), body
	})
}
