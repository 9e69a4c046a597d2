package vmctl_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
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

// startDockerd starts a throwaway dockerd in a namespace of its own; a
// missing dockerd fails the test (make deps installs it).
func startDockerd(t *testing.T, ctx context.Context) *dockerd.Daemon {
	t.Helper()
	labtest.Need(t, dockerd.Binary, "nsenter")
	n := labtest.Net(t, "rcvd", "10.63.0.1/24")
	dir, err := os.MkdirTemp("", "rcdk")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	start := time.Now()
	d, err := dockerd.Start(ctx, dockerd.Config{Dir: dir, Netns: n})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Stop()) })
	t.Logf("dockerd (%s) answered after %s", d.StorageDriver, time.Since(start).Round(time.Millisecond))
	return d
}

func containerImage(t *testing.T) ([]byte, vmctl.Image) {
	t.Helper()
	path, sum, _, err := guestimg.Container("")
	require.NoError(t, err)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return data, imageOf("11111111-2222-4333-8444-555555555555", rackcloud.FormatDockerArchive, data, sum)
}

func containerLogs(t *testing.T, ctx context.Context, endpoint, name string) string {
	t.Helper()
	c, err := client.New(client.WithHost(endpoint), client.WithAPIVersionNegotiation())
	require.NoError(t, err)
	defer c.Close()
	r, err := c.ContainerLogs(ctx, name, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	require.NoError(t, err)
	defer r.Close()
	b, _ := io.ReadAll(r)
	return string(b)
}

// The Docker driver against a real dockerd: load once, create once,
// start (the container prints its marker), stop, reboot, a crash behind
// rackcloud's back, delete twice; a corrupt image leaves nothing.
func TestDockerDriverAgainstRealDockerd(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := startDockerd(t, ctx)
	data, img := containerImage(t)
	drv := &vmctl.Docker{}
	defer drv.Close()
	tg := vmctl.Target{HostID: "dk1", Role: rackcloud.RoleDocker, Endpoint: d.Endpoint}

	cp, err := drv.Probe(ctx, tg)
	require.NoError(t, err)
	require.Positive(t, cp.Resources.CPUCores)
	require.Positive(t, cp.Resources.MemoryMiB)
	t.Log(cp.Daemon)

	bad := img
	bad.ID = "bad00000-2222-4333-8444-555555555555"
	sum := sha256.Sum256(append([]byte{1}, data...))
	bad.Checksum = "sha256:" + hex.EncodeToString(sum[:])
	bad.Open = func(context.Context) (io.ReadCloser, error) { return checked(data, bad.Checksum), nil }
	s := vmctl.Spec{GuestID: "aaaaaaaa-2222-4333-8444-555555555555", Name: "web", ProjectID: "p1", Kind: rackcloud.GuestContainer,
		Flavor: rackcloud.Resources{CPUCores: 1, MemoryMiB: 64, DiskGiB: 1}, Labels: map[string]string{"tier": "web"}, Image: bad}
	err = drv.Prepare(ctx, tg, s)
	require.ErrorIs(t, err, vmctl.ErrChecksum)
	c, err := client.New(client.WithHost(d.Endpoint), client.WithAPIVersionNegotiation())
	require.NoError(t, err)
	defer c.Close()
	imgs, err := c.ImageList(ctx, client.ImageListOptions{All: true})
	require.NoError(t, err)
	require.Empty(t, imgs.Items, "a corrupt image leaves nothing")

	s.Image = img
	loads := 0
	counting := img
	counting.Open = func(ctx context.Context) (io.ReadCloser, error) { loads++; return img.Open(ctx) }
	s.Image = counting
	start := time.Now()
	require.NoError(t, drv.Prepare(ctx, tg, s))
	t.Logf("image loaded in %s", time.Since(start).Round(time.Millisecond))
	require.NoError(t, drv.Prepare(ctx, tg, s))
	require.Equal(t, 1, loads, "loaded once per host")

	start = time.Now()
	h1, err := drv.Create(ctx, tg, s)
	require.NoError(t, err)
	h2, err := drv.Create(ctx, tg, s)
	require.NoError(t, err)
	require.Equal(t, h1, h2, "a re-run finds the container it made")
	require.NoError(t, drv.Start(ctx, tg, s))
	t.Logf("create+start in %s", time.Since(start).Round(time.Millisecond))
	o, err := drv.Observe(ctx, tg, s)
	require.NoError(t, err)
	require.Equal(t, vmctl.ObservedRunning, o.State)
	require.Equal(t, h1, o.Handle)
	labtest.Eventually(t, 30*time.Second, 100*time.Millisecond, "the container's marker", func() (bool, string) {
		l := containerLogs(t, ctx, d.Endpoint, "rc-"+s.GuestID)
		return strings.Contains(l, guestimg.ContainerMarker), l
	})
	in, err := c.ContainerInspect(ctx, "rc-"+s.GuestID, client.ContainerInspectOptions{})
	require.NoError(t, err)
	require.Equal(t, "web", in.Container.Config.Labels["rackcloud.label.tier"])
	require.Equal(t, s.GuestID, in.Container.Config.Labels[vmctl.LabelGuest])
	require.Equal(t, int64(64<<20), in.Container.HostConfig.Memory)
	require.Equal(t, int64(1e9), in.Container.HostConfig.NanoCPUs)
	require.EqualValues(t, "no", in.Container.HostConfig.RestartPolicy.Name)

	require.NoError(t, drv.Stop(ctx, tg, s, 5*time.Second))
	o, err = drv.Observe(ctx, tg, s)
	require.NoError(t, err)
	require.Equal(t, vmctl.ObservedStopped, o.State)
	require.Equal(t, "exited with code 143", o.Detail, "the trap ran: a gentle stop")
	require.NoError(t, drv.Start(ctx, tg, s))
	require.NoError(t, drv.Reboot(ctx, tg, s))
	o, err = drv.Observe(ctx, tg, s)
	require.NoError(t, err)
	require.Equal(t, vmctl.ObservedRunning, o.State)

	// Behind rackcloud's back: the guest's process dies with code 3.
	_, err = c.ContainerKill(ctx, "rc-"+s.GuestID, client.ContainerKillOptions{Signal: "USR1"})
	require.NoError(t, err)
	labtest.Eventually(t, 30*time.Second, 100*time.Millisecond, "the container to exit", func() (bool, string) {
		o, err = drv.Observe(ctx, tg, s)
		require.NoError(t, err)
		return o.State == vmctl.ObservedStopped, fmt.Sprint(o)
	})
	require.Equal(t, "exited with code 3", o.Detail)
	list, err := drv.List(ctx, tg)
	require.NoError(t, err)
	require.Equal(t, vmctl.ObservedStopped, list[s.GuestID].State)

	require.NoError(t, drv.Delete(ctx, tg, s))
	require.NoError(t, drv.Delete(ctx, tg, s), "twice")
	o, err = drv.Observe(ctx, tg, s)
	require.NoError(t, err)
	require.Equal(t, vmctl.ObservedMissing, o.State)
	require.ErrorIs(t, drv.Start(ctx, tg, s), rackcloud.ErrNotFound)
	_, err = drv.Probe(ctx, vmctl.Target{HostID: "gone", Endpoint: "unix://" + filepath.Join(t.TempDir(), "none.sock")})
	require.Error(t, err, "an unreachable daemon is an error, not a hang")
}

// End to end through tasks on a real dockerd: adopt it, create a
// container guest (every step), the reconciler sees a crash, delete.
func TestContainerGuestOnAdoptedDockerd(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	d := startDockerd(t, ctx)
	path, sum, size, err := guestimg.Container("")
	require.NoError(t, err)
	e := newVenvWith(t, 1, vmctl.DefaultDrivers())
	im, err := store.CreateImage(ctx, e.pool, rackcloud.Image{Meta: rackcloud.Meta{Name: "busybox"}, URL: "file://" + path,
		Checksum: sum, Format: rackcloud.FormatDockerArchive, Size: size})
	require.NoError(t, err)
	h := e.adoptDocker("adopted-docker", d, nil)
	e.waitSnapshot(1)

	g := e.guest("hello", 1, 64, func(g *rackcloud.Guest) { g.ImageID = im.ID })
	start := time.Now()
	info := e.guestTask(rackcloud.KindGuestCreate, g)
	require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
	t.Logf("guest.create to running: %s", time.Since(start).Round(time.Millisecond))
	g = e.get(g.ID)
	require.Equal(t, rackcloud.GuestRunning, g.State)
	require.Equal(t, h, g.HostID)
	labtest.Eventually(t, 30*time.Second, 100*time.Millisecond, "the guest's marker", func() (bool, string) {
		l := containerLogs(t, ctx, d.Endpoint, "rc-"+g.ID)
		return strings.Contains(l, guestimg.ContainerMarker), l
	})
	// The console (GET /v1/guests/{id}/console) is the container's
	// output, read through the controller, whole or its newest bytes.
	text, cut, err := e.vm.Console(ctx, g.ID, 1<<16)
	require.NoError(t, err)
	require.False(t, cut)
	require.Contains(t, text, guestimg.ContainerMarker)
	short, cut, err := e.vm.Console(ctx, g.ID, 4)
	require.NoError(t, err)
	require.True(t, cut, "older output is left out")
	require.LessOrEqual(t, len(short), 4)
	require.True(t, strings.HasSuffix(text, short), "the newest bytes: %q of %q", short, text)

	c, err := client.New(client.WithHost(d.Endpoint), client.WithAPIVersionNegotiation())
	require.NoError(t, err)
	defer c.Close()
	_, err = c.ContainerKill(ctx, "rc-"+g.ID, client.ContainerKillOptions{Signal: "KILL"})
	require.NoError(t, err)
	labtest.Eventually(t, 30*time.Second, 200*time.Millisecond, "the reconciler to see the crash", func() (bool, string) {
		require.NoError(t, e.vm.Reconcile(ctx))
		g = e.get(g.ID)
		return g.Observed != nil && g.Observed.State == "crashed", fmt.Sprint(g.Observed)
	})
	require.Equal(t, rackcloud.GuestRunning, g.State, "what was asked for is unchanged")
	require.Equal(t, "exited with code 137", g.Observed.Detail)

	require.Equal(t, rackcloud.TaskSucceeded, e.guestTask(rackcloud.KindGuestDelete, g).State)
	res, err := c.ContainerList(ctx, client.ContainerListOptions{All: true})
	require.NoError(t, err)
	require.Empty(t, res.Items)
}

// adoptDocker registers a docker host at d's endpoint and adopts it
// through host.adopt (which reads its capacity from the daemon).
func (e *venv) adoptDocker(name string, d *dockerd.Daemon, labels rackcloud.Labels) string {
	e.t.Helper()
	ctx := context.Background()
	h, err := store.CreateHost(ctx, e.pool, rackcloud.Host{Meta: rackcloud.Meta{Name: name, Labels: labels}, Role: rackcloud.RoleDocker,
		RackID: e.racks[0], Resources: rackcloud.Resources{DiskGiB: 20}})
	require.NoError(e.t, err)
	require.NoError(e.t, store.SetHostEndpoint(ctx, e.pool, h.ID, d.Endpoint))
	info := e.run(rackcloud.KindHostAdopt, rackcloud.HostTaskParams{HostID: h.ID}, "host/"+h.ID)
	require.Equal(e.t, rackcloud.TaskSucceeded, info.State, info.Error)
	return h.ID
}
