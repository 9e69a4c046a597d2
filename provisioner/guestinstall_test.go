package provisioner_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/provisioner"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// poweredBMC adds a power reading to the fake BMC: on says what it reads.
type poweredBMC struct {
	provisioner.BMC
	on *atomic.Bool
}

func (b poweredBMC) PowerState(context.Context, string) (rackcloud.PowerState, error) {
	if b.on.Load() {
		return rackcloud.PowerOn, nil
	}
	return rackcloud.PowerOff, nil
}

var _ provisioner.PowerReader = poweredBMC{}

// newGuestInstallEnv runs the provisioner with a BMC that reads power as
// on says, and makes a ready bm host, a bm image and a bm guest (claimed
// when claim).
func newGuestInstallEnv(t *testing.T, on *atomic.Bool, claim bool) (*env, rackcloud.Host, rackcloud.Image, rackcloud.Guest) {
	t.Helper()
	ctx := context.Background()
	sealer, err := store.NewSealer(store.NewSecretKey())
	require.NoError(t, err)
	e := newEnvWith(t, func(c *provisioner.Config) {
		c.Sealer, c.BootURL = sealer, "http://10.88.0.1:8080"
		c.InstallTimeout, c.FirstBootTimeout = time.Hour, time.Hour
		c.BMC = poweredBMC{BMC: c.BMC, on: on}
	})
	h := e.host("metal", true)
	_, err = e.pool.Exec(ctx, `UPDATE hosts SET role = 'bm', state = 'ready', cpu_cores = 4, memory_mib = 4096, disk_gib = 50 WHERE id = $1`, h.ID)
	require.NoError(t, err)
	im, err := store.CreateImage(ctx, e.pool, rackcloud.Image{Meta: rackcloud.Meta{Name: "tenant"}, URL: "http://10.88.0.1:8080/files/t.img.zst",
		Checksum: "sha256:" + strings.Repeat("cd", 32), Format: rackcloud.FormatRawZstd, Size: 1 << 30, Roles: []rackcloud.HostRole{rackcloud.RoleBareMetal}})
	require.NoError(t, err)
	p, err := store.CreateProject(ctx, e.pool, rackcloud.Project{Meta: rackcloud.Meta{Name: "p"}})
	require.NoError(t, err)
	_, err = store.SetQuota(ctx, e.pool, p.ID, 0, rackcloud.Resources{CPUCores: 8, MemoryMiB: 8192, DiskGiB: 100}, 1)
	require.NoError(t, err)
	g, err := store.CreateGuest(ctx, e.pool, rackcloud.Guest{Meta: rackcloud.Meta{Name: "metal-guest"}, ProjectID: p.ID,
		Kind: rackcloud.GuestBareMetal, Flavor: rackcloud.Resources{CPUCores: 1, MemoryMiB: 512, DiskGiB: 1}, ImageID: im.ID})
	require.NoError(t, err)
	if claim {
		g, err = store.ClaimHost(ctx, e.pool, g.ID, h.ID, "test")
		require.NoError(t, err)
	}
	return e, e.get(h.ID), im, g
}

func (e *env) installGuest(h rackcloud.Host, g rackcloud.Guest, im rackcloud.Image) string {
	e.t.Helper()
	info, err := e.engine.Submit(context.Background(), e.pool, tasks.Submission{Kind: rackcloud.KindHostInstallGuest, Target: "host/" + h.ID,
		Params: rackcloud.HostInstallGuestParams{HostID: h.ID, GuestID: g.ID, ImageID: im.ID}})
	require.NoError(e.t, err)
	return info.ID
}

// host.install-guest: ready -> provisioning, the guest's image in the
// plan, PXE, the installer's report, disk boot; it waits for the BMC to
// report power on (no heartbeat is awaited), then the host is ready again
// with its role and image unchanged.
func TestInstallGuest(t *testing.T) {
	t.Parallel()
	var on atomic.Bool
	e, h, im, g := newGuestInstallEnv(t, &on, true)
	id := e.installGuest(h, g, im)
	e.waitFor(id, "the installer")
	require.Equal(t, rackcloud.HostProvisioning, e.get(h.ID).State)
	e.event(h, rackcloud.BootEventInstall, "10.88.0.50", rackcloud.InstallReport{Phase: rackcloud.InstallWritten, Disk: "/dev/vda",
		SHA256: im.Checksum})
	e.waitFor(id, "power on (it reports off)")
	require.Equal(t, []string{"pxe " + h.ID, "disk " + h.ID}, e.bmc.Calls())
	on.Store(true)
	_, err := e.engine.Wake(context.Background(), e.pool, "host/"+h.ID)
	require.NoError(t, err)
	info := e.waitTask(id)
	require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
	got := e.get(h.ID)
	require.Equal(t, rackcloud.HostReady, got.State)
	require.Equal(t, rackcloud.RoleBareMetal, got.Role)
	require.Empty(t, got.ImageID, "the host's own image is unchanged")
}

// A guest that does not hold the host cannot have its image installed
// there: the task fails and the host stays ready.
func TestInstallGuestNeedsTheClaim(t *testing.T) {
	t.Parallel()
	var on atomic.Bool
	e, h, im, g := newGuestInstallEnv(t, &on, false)
	info := e.waitTask(e.installGuest(h, g, im))
	require.Equal(t, rackcloud.TaskFailed, info.State)
	require.Contains(t, info.Error, "does not hold host")
	require.Equal(t, rackcloud.HostReady, e.get(h.ID).State)
	require.Empty(t, e.bmc.Calls())
}
