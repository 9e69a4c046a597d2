package provisioner_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// Drain: ready -> draining (no new guests) until the host's running
// guests are gone -> maintenance; activate: -> ready, guests allowed.
func TestDrainAndActivate(t *testing.T) {
	t.Parallel()
	e := newProvisionEnv(t, &fakeRoles{}, time.Hour)
	ctx := context.Background()
	h, im := e.available("drain")
	_, err := store.TransitionHost(ctx, e.pool, h.ID, store.Transition{From: rackcloud.HostAvailable, To: rackcloud.HostProvisioning})
	require.NoError(t, err)
	_, err = store.TransitionHost(ctx, e.pool, h.ID, store.Transition{From: rackcloud.HostProvisioning, To: rackcloud.HostReady})
	require.NoError(t, err)
	p, err := store.CreateProject(ctx, e.pool, rackcloud.Project{Meta: rackcloud.Meta{Name: "drain"}})
	require.NoError(t, err)
	_, err = store.SetQuota(ctx, e.pool, p.ID, 0, rackcloud.Resources{CPUCores: 4, MemoryMiB: 1000, DiskGiB: 10}, 0)
	require.NoError(t, err)
	g, err := store.CreateGuest(ctx, e.pool, rackcloud.Guest{Meta: rackcloud.Meta{Name: "g"}, ProjectID: p.ID, Kind: rackcloud.GuestContainer,
		Flavor: rackcloud.Resources{CPUCores: 1, MemoryMiB: 100, DiskGiB: 1}, ImageID: im.ID, State: rackcloud.GuestRunning})
	require.NoError(t, err)
	// The database takes a guest only on a host of its role with room.
	_, err = e.pool.Exec(ctx, `UPDATE hosts SET role = 'docker', cpu_cores = 4, memory_mib = 4096, disk_gib = 10 WHERE id = $1`, h.ID)
	require.NoError(t, err)
	_, err = e.pool.Exec(ctx, `UPDATE guests SET host_id = $1 WHERE id = $2`, h.ID, g.ID)
	require.NoError(t, err)

	submit := func(kind string) string {
		info, err := e.engine.Submit(ctx, e.pool, tasks.Submission{Kind: kind, Target: "host/" + h.ID,
			Params: rackcloud.HostMaintenanceParams{HostID: h.ID, Reason: "disk swap", NoEvacuate: true}})
		require.NoError(t, err)
		return info.ID
	}
	id := submit(rackcloud.KindHostDrain)
	e.waitFor(id, "1 guest(s) on the host")
	got := e.get(h.ID)
	require.Equal(t, rackcloud.HostDraining, got.State)
	require.True(t, got.Maintenance, "no new guests while draining")
	_, err = e.pool.Exec(ctx, `UPDATE guests SET state = 'stopped' WHERE id = $1`, g.ID)
	require.NoError(t, err)
	_, err = e.engine.Wake(ctx, e.pool, "host/"+h.ID)
	require.NoError(t, err)
	require.Equal(t, rackcloud.TaskSucceeded, e.waitTask(id).State)
	require.Equal(t, rackcloud.HostMaintenance, e.get(h.ID).State)

	id = submit(rackcloud.KindHostActivate)
	require.Equal(t, rackcloud.TaskSucceeded, e.waitTask(id).State)
	got = e.get(h.ID)
	require.Equal(t, rackcloud.HostReady, got.State)
	require.False(t, got.Maintenance)
}
