package vmctl_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
)

// A snapshot that has not heard of a change yet (a host adopted a moment
// ago, its notification still on the way) does not fail a guest for
// good: before placement refuses, it reloads and decides again.
func TestStaleSnapshotDoesNotRefuseForGood(t *testing.T) {
	e := newVenv(t, 1)
	ctx := context.Background()
	h, err := store.CreateHost(ctx, e.pool, rackcloud.Host{Meta: rackcloud.Meta{Name: "late"}, RackID: e.racks[0],
		Role: rackcloud.RoleDocker, State: rackcloud.HostDiscovered,
		Resources: rackcloud.Resources{CPUCores: 4, MemoryMiB: 4096, DiskGiB: 100}})
	require.NoError(t, err)
	require.NoError(t, store.SetHostEndpoint(ctx, e.pool, h.ID, "unix:///fake/late.sock"))
	e.waitSnapshot(1)

	// The host becomes ready without a notification: triggers (and so
	// NOTIFY) are off for this one session.
	conn, err := e.pool.Acquire(ctx)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `SET session_replication_role = replica`)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `UPDATE hosts SET state = 'ready' WHERE id = $1`, h.ID)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `SET session_replication_role = DEFAULT`)
	require.NoError(t, err)
	conn.Release()

	g := e.guest("early", 1, 256, nil)
	info := e.guestTask(rackcloud.KindGuestCreate, g)
	require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
	require.Equal(t, h.ID, e.get(g.ID).HostID)
}
