package vmctl_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/dockerd"
	"github.com/rackcloud/rackcloud/lab/guestimg"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/vmctl"
)

// containers lists the rackcloud containers on a daemon: name -> state.
func containers(t *testing.T, ctx context.Context, d *dockerd.Daemon) map[string]string {
	t.Helper()
	c, err := client.New(client.WithHost(d.Endpoint), client.WithAPIVersionNegotiation())
	require.NoError(t, err)
	defer c.Close()
	res, err := c.ContainerList(ctx, client.ContainerListOptions{All: true})
	require.NoError(t, err)
	out := map[string]string{}
	for _, ct := range res.Items {
		out[strings.TrimPrefix(ct.Names[0], "/")] = string(ct.State)
	}
	return out
}

// runsOn waits for guest g's container to print its marker on d.
func runsOn(t *testing.T, ctx context.Context, d *dockerd.Daemon, g rackcloud.Guest) {
	t.Helper()
	labtest.Eventually(t, 60*time.Second, 100*time.Millisecond, g.Name+"'s marker", func() (bool, string) {
		l := containerLogs(t, ctx, d.Endpoint, "rc-"+g.ID)
		return strings.Contains(l, guestimg.ContainerMarker), l
	})
}

// Evacuation between two real dockerds, each adopted: live, a running
// container moves to the other host (and leaves the first); fenced, with
// the source daemon stopped, it is recreated from its image on the other
// host; a guest no other host can take fails with placement's
// explanation and keeps its row, in both modes.
func TestEvacuateBetweenTwoAdoptedDockerds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	d1 := startDockerd(t, ctx) // each in a namespace of its own
	d2 := startDockerd(t, ctx)
	path, sum, size, err := guestimg.Container("")
	require.NoError(t, err)
	e := newVenvWith(t, 1, vmctl.DefaultDrivers())
	im, err := store.CreateImage(ctx, e.pool, rackcloud.Image{Meta: rackcloud.Meta{Name: "busybox"}, URL: "file://" + path,
		Checksum: sum, Format: rackcloud.FormatDockerArchive, Size: size})
	require.NoError(t, err)
	h1 := e.adoptDocker("dk1", d1, rackcloud.Labels{"ssd": "true"})
	e.waitSnapshot(1)
	mk := func(name string, constraints ...string) rackcloud.Guest {
		g := e.created(name, 1, func(g *rackcloud.Guest) {
			g.ImageID, g.Flavor.MemoryMiB, g.HA, g.Constraints = im.ID, 64, rackcloud.HARestart, constraints
		})
		require.Equal(t, rackcloud.GuestRunning, g.State)
		return g
	}
	web := mk("web")
	pinned := mk("pinned", "ssd")
	runsOn(t, ctx, d1, web)
	h2 := e.adoptDocker("dk2", d2, rackcloud.Labels{"gpu": "true"})
	e.waitSnapshot(2)

	// Live: the operator put dk1 in maintenance.
	e.setHost(h1, "state = 'maintenance', maintenance = true")
	info, rep := e.evacuate(h1, false)
	require.Equal(t, rackcloud.TaskFailed, info.State, "pinned could not move")
	require.Equal(t, map[string]string{"web": "moved", "pinned": "failed"}, outcomes(rep))
	t.Logf("live: %s", info.Error)
	require.Contains(t, info.Error, "no host to move pinned to")
	require.Contains(t, info.Error, "ssd")
	g := e.get(web.ID)
	require.Equal(t, h2, g.HostID)
	require.Equal(t, rackcloud.GuestRunning, g.State)
	runsOn(t, ctx, d2, web)
	require.Equal(t, "running", containers(t, ctx, d2)["rc-"+web.ID])
	require.NotContains(t, containers(t, ctx, d1), "rc-"+web.ID, "the source is cleaned")
	require.Equal(t, h1, e.get(pinned.ID).HostID, "the guest that could not move is kept")
	require.Equal(t, rackcloud.GuestRunning, e.get(pinned.ID).State)
	require.Equal(t, "running", containers(t, ctx, d1)["rc-"+pinned.ID], "and runs again where it was")

	// Fenced: dk1 is back in service, dk2 dies and is fenced.
	e.setHost(h1, "state = 'ready', maintenance = false")
	gpu := mk("gpu", "gpu")
	require.Equal(t, h2, gpu.HostID)
	require.NoError(t, d2.Stop())
	e.setHost(h2, "power = 'off', state = 'draining', maintenance = true")
	info, rep = e.evacuate(h2, true)
	require.Equal(t, rackcloud.TaskFailed, info.State, "gpu could not move")
	require.Equal(t, map[string]string{"web": "moved", "gpu": "failed"}, outcomes(rep))
	g = e.get(web.ID)
	require.Equal(t, h1, g.HostID)
	require.Equal(t, rackcloud.GuestRunning, g.State)
	runsOn(t, ctx, d1, web)
	g = e.get(gpu.ID)
	require.Equal(t, h2, g.HostID, "kept on the fenced host")
	require.Equal(t, rackcloud.GuestFailed, g.State)
	require.Contains(t, g.Placement, "gpu")
	t.Logf("fenced: %s", g.StateReason)
}
