package vmctl_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/provisioner"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
	"github.com/rackcloud/rackcloud/vmctl"
)

// fakePower is hosts' BMCs in memory: the bare-metal driver's HostPower
// and the provisioner's BMC (the real ones, ipmi_sim driving QEMU, are in
// lab/bmguest_test.go).
type fakePower struct {
	mu    sync.Mutex
	on    map[string]bool
	calls []string
	// ignoreSoft: the OS does not shut down on ACPI's power button.
	ignoreSoft bool
}

func newFakePower() *fakePower { return &fakePower{on: map[string]bool{}} }

func (f *fakePower) record(op, id string, on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, op)
	f.on[id] = on
}

func (f *fakePower) PowerState(_ context.Context, id string) (rackcloud.PowerState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.on[id] {
		return rackcloud.PowerOn, nil
	}
	return rackcloud.PowerOff, nil
}

func (f *fakePower) SetPower(_ context.Context, id string, a bmc.PowerAction) error {
	switch a {
	case bmc.PowerOn:
		f.record("on", id, true)
	case bmc.PowerOff:
		f.record("off", id, false)
	case bmc.PowerSoft:
		f.mu.Lock()
		on := f.on[id] && f.ignoreSoft
		f.mu.Unlock()
		f.record("soft", id, on)
	default:
		return fmt.Errorf("%w: power %s", rackcloud.ErrInvalid, a)
	}
	return nil
}

func (f *fakePower) DiskBoot(_ context.Context, id string) error {
	f.record("disk", id, true)
	return nil
}

func (f *fakePower) PXEBoot(_ context.Context, id string) error {
	f.record("pxe", id, true)
	return nil
}

func (f *fakePower) PowerOff(_ context.Context, id string) error {
	f.record("off", id, false)
	return nil
}

func (f *fakePower) MACs(context.Context, string) ([]string, error) {
	return nil, errors.New("not asked in these tests")
}

// Calls returns the power calls so far and forgets them.
func (f *fakePower) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

var (
	_ vmctl.HostPower         = (*fakePower)(nil)
	_ provisioner.BMC         = (*fakePower)(nil)
	_ provisioner.PowerReader = (*fakePower)(nil)
)

// The bare-metal driver is the host's power: start boots the disk unless
// the host is on, stop asks ACPI and cuts the power when the OS does not
// listen, reboot cycles, delete powers off, observe reads the power.
func TestBareMetalDriver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := newFakePower()
	d := &vmctl.BareMetal{Power: p, Poll: time.Millisecond}
	tg := vmctl.Target{HostID: "h1", Role: rackcloud.RoleBareMetal}
	s := vmctl.Spec{GuestID: "g1", Name: "metal", Kind: rackcloud.GuestBareMetal}

	handle, err := d.Create(ctx, tg, s)
	require.NoError(t, err)
	require.Equal(t, "host/h1", handle)
	require.ErrorIs(t, d.Prepare(ctx, tg, s), rackcloud.ErrInvalid, "the provisioner installs the image")
	o, err := d.Observe(ctx, tg, s)
	require.NoError(t, err)
	require.Equal(t, vmctl.ObservedStopped, o.State)

	require.NoError(t, d.Start(ctx, tg, s))
	require.NoError(t, d.Start(ctx, tg, s))
	require.Equal(t, []string{"disk"}, p.Calls(), "a running host is left alone")
	o, err = d.Observe(ctx, tg, s)
	require.NoError(t, err)
	require.Equal(t, vmctl.ObservedRunning, o.State)
	require.Equal(t, "BMC reports power on", o.Detail)

	require.NoError(t, d.Stop(ctx, tg, s, time.Second))
	require.Equal(t, []string{"soft"}, p.Calls(), "the OS shut down on ACPI")
	require.NoError(t, d.Stop(ctx, tg, s, time.Second))
	require.Empty(t, p.Calls(), "a stopped host is left alone")

	require.NoError(t, d.Reboot(ctx, tg, s))
	require.Equal(t, []string{"disk"}, p.Calls())
	p.ignoreSoft = true
	require.NoError(t, d.Stop(ctx, tg, s, 5*time.Millisecond))
	require.Equal(t, []string{"soft", "off"}, p.Calls(), "past the grace the power is cut")

	require.NoError(t, d.Start(ctx, tg, s))
	require.NoError(t, d.Delete(ctx, tg, s))
	require.Equal(t, []string{"disk", "off"}, p.Calls())

	none := &vmctl.BareMetal{}
	require.ErrorIs(t, none.Start(ctx, tg, s), vmctl.ErrNoBMC)
}

// driverPower is the driver's view of fakePower; with broken set, the
// driver sees the host off and cannot boot it (the provisioner's view is
// unaffected).
type driverPower struct {
	*fakePower
	broken atomic.Bool
}

func (d *driverPower) PowerState(ctx context.Context, id string) (rackcloud.PowerState, error) {
	if d.broken.Load() {
		return rackcloud.PowerOff, nil
	}
	return d.fakePower.PowerState(ctx, id)
}

func (d *driverPower) DiskBoot(ctx context.Context, id string) error {
	if d.broken.Load() {
		return errors.New("BMC busy")
	}
	return d.fakePower.DiskBoot(ctx, id)
}

// bmEnv runs vmctl with the bare-metal driver and the real provisioner on
// one engine, both on fakePower, with a ready bm host and a bm image.
type bmEnv struct {
	*venv
	power *fakePower
	drv   *driverPower
	host  rackcloud.Host
	image rackcloud.Image
}

func newBMEnv(t *testing.T) *bmEnv {
	t.Helper()
	p := newFakePower()
	dp := &driverPower{fakePower: p}
	sealer, err := store.NewSealer(store.NewSecretKey())
	require.NoError(t, err)
	e := newVenvAlso(t, 1, map[rackcloud.GuestKind]vmctl.Driver{rackcloud.GuestBareMetal: &vmctl.BareMetal{Power: dp, Poll: time.Millisecond}},
		func(pool *pgxpool.Pool, engine *tasks.Engine) {
			prov := provisioner.New(provisioner.Config{Pool: pool, BMC: p, Sealer: sealer, BootURL: "http://10.88.0.1:8080",
				Recheck: time.Hour, InspectTimeout: time.Hour, InstallTimeout: time.Hour, FirstBootTimeout: time.Hour})
			require.NoError(t, prov.Register(engine))
		})
	ctx := context.Background()
	h, err := store.CreateHost(ctx, e.pool, rackcloud.Host{Meta: rackcloud.Meta{Name: "metal-host"}, RackID: e.racks[0],
		MACs: []string{"52:54:00:bb:00:01"}, Role: rackcloud.RoleBareMetal, State: rackcloud.HostReady,
		Resources: rackcloud.Resources{CPUCores: 8, MemoryMiB: 16384, DiskGiB: 100}})
	require.NoError(t, err)
	im, err := store.CreateImage(ctx, e.pool, rackcloud.Image{Meta: rackcloud.Meta{Name: "tenant"}, URL: "http://10.88.0.1:8080/files/t.img.zst",
		Checksum: "sha256:" + strings.Repeat("cd", 32), Format: rackcloud.FormatRawZstd, Size: 1 << 30,
		Roles: []rackcloud.HostRole{rackcloud.RoleBareMetal}})
	require.NoError(t, err)
	e.waitSnapshot(1)
	return &bmEnv{venv: e, power: p, drv: dp, host: h, image: im}
}

func (e *bmEnv) bmGuest(name string) rackcloud.Guest {
	return e.guest(name, 2, 1024, func(g *rackcloud.Guest) { g.Kind, g.ImageID = rackcloud.GuestBareMetal, e.image.ID })
}

// event stores a boot event of the host as the boot service would and
// wakes the host's task as the API does.
func (e *bmEnv) event(kind rackcloud.BootEventKind, data any) {
	e.t.Helper()
	ctx := context.Background()
	b, err := json.Marshal(data)
	require.NoError(e.t, err)
	_, err = store.InsertBootEvents(ctx, e.pool, []store.BootEvent{{MAC: e.host.MACs[0], HostID: e.host.ID, Kind: string(kind),
		IP: "10.88.0.60", Data: b, At: time.Now()}})
	require.NoError(e.t, err)
	_, err = e.engine.Wake(ctx, e.pool, "host/"+e.host.ID)
	require.NoError(e.t, err)
}

func (e *bmEnv) hostState() rackcloud.HostState {
	h, err := store.GetHost(context.Background(), e.pool, e.host.ID)
	require.NoError(e.t, err)
	return h.State
}

// waitCalls waits until the power calls so far are want.
func (e *bmEnv) waitCalls(what string, want ...string) {
	e.t.Helper()
	var got []string
	labtest.Eventually(e.t, 30*time.Second, 10*time.Millisecond, what, func() (bool, string) {
		got = append(got, e.power.Calls()...)
		return slices.Equal(got, want), fmt.Sprint(got)
	})
}

// createToInstaller starts creating bm guest name and waits until its
// host was powered on into the installer.
func (e *bmEnv) createToInstaller(name string) (rackcloud.Guest, string) {
	e.t.Helper()
	g := e.bmGuest(name)
	id := e.submit(rackcloud.KindGuestCreate, g)
	e.waitCalls("PXE into the installer", "pxe")
	return g, id
}

func (e *bmEnv) submit(kind string, g rackcloud.Guest) string {
	e.t.Helper()
	info, err := e.engine.Submit(context.Background(), e.pool, tasks.Submission{Kind: kind, Target: "guest/" + g.ID,
		Params: rackcloud.GuestTaskParams{GuestID: g.ID}})
	require.NoError(e.t, err)
	return info.ID
}

func (e *bmEnv) wait(id string) *tasks.Info {
	e.t.Helper()
	var info *tasks.Info
	labtest.Eventually(e.t, 30*time.Second, 10*time.Millisecond, "task "+id+" to end", func() (bool, string) {
		var err error
		info, err = e.engine.Get(context.Background(), id)
		require.NoError(e.t, err)
		return info.State.Terminal(), fmt.Sprintf("%+v", info.Task)
	})
	return info
}

// A bare-metal guest's life with the real provisioner: create claims the
// bm host, installs the guest's image on it (provisioning: PXE, the
// installer's report, disk boot, power on) and the host is ready again,
// still the guest's; a second bm guest finds no host and says why; stop,
// start and reboot are the BMC's; delete powers off, wipes the host
// (deprovisioning: PXE, the agent's wipe report) and releases the claim
// only then: the host is available.
func TestBareMetalGuestLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newBMEnv(t)
	g, create := e.createToInstaller("metal")
	require.Equal(t, rackcloud.HostProvisioning, e.hostState())
	inst, err := store.GetHostInstall(ctx, e.pool, nil, e.host.ID)
	require.ErrorIs(t, err, store.ErrNoSealer, "the plan is sealed")
	_ = inst
	var imageID string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT image_id::text FROM host_installs WHERE host_id = $1`, e.host.ID).Scan(&imageID))
	require.Equal(t, e.image.ID, imageID, "the installer writes the guest's image")

	e.event(rackcloud.BootEventInstall, rackcloud.InstallReport{Phase: rackcloud.InstallWritten, Disk: "/dev/vda", SHA256: e.image.Checksum})
	info := e.wait(create)
	require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
	require.Equal(t, []string{"disk"}, e.power.Calls(), "the disk booted; start found it on")
	g = e.get(g.ID)
	require.Equal(t, rackcloud.GuestRunning, g.State)
	require.Equal(t, e.host.ID, g.HostID)
	require.Equal(t, "host/"+e.host.ID, g.Handle)
	require.Equal(t, "running", g.Observed.State)
	require.Equal(t, rackcloud.HostReady, e.hostState(), "ready again, and still the guest's")
	h, err := store.GetHost(ctx, e.pool, e.host.ID)
	require.NoError(t, err)
	require.Equal(t, rackcloud.RoleBareMetal, h.Role)

	// The host is taken: another bm guest is refused with the reason.
	g2 := e.bmGuest("metal2")
	info = e.wait(e.submit(rackcloud.KindGuestCreate, g2))
	require.Equal(t, rackcloud.TaskFailed, info.State)
	g2 = e.get(g2.ID)
	require.Equal(t, rackcloud.GuestFailed, g2.State)
	require.Contains(t, g2.StateReason, "no host fits")

	require.Equal(t, rackcloud.TaskSucceeded, e.wait(e.submit(rackcloud.KindGuestStop, g)).State)
	require.Equal(t, []string{"soft"}, e.power.Calls())
	require.Equal(t, rackcloud.GuestStopped, e.get(g.ID).State)
	require.NoError(t, e.vm.Reconcile(ctx))
	require.Equal(t, "stopped", e.get(g.ID).Observed.State, "the reconciler reads the BMC")
	require.Equal(t, rackcloud.TaskSucceeded, e.wait(e.submit(rackcloud.KindGuestStart, g)).State)
	require.Equal(t, rackcloud.TaskSucceeded, e.wait(e.submit(rackcloud.KindGuestReboot, g)).State)
	require.Equal(t, []string{"disk", "disk"}, e.power.Calls())

	del := e.submit(rackcloud.KindGuestDelete, g)
	e.waitCalls("power off, then PXE into the wipe", "off", "pxe")
	require.Equal(t, rackcloud.HostDeprovisioning, e.hostState())
	require.Equal(t, e.host.ID, e.get(g.ID).HostID, "the claim holds until the host is wiped")
	e.event(rackcloud.BootEventInventory, rackcloud.Inventory{CPUs: 8, MemoryMiB: 16384, Firmware: "bios",
		Disks: []rackcloud.InventoryDisk{{Name: "vda", SizeBytes: 20 << 30}}, Wiped: []string{"vda"}})
	info = e.wait(del)
	require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
	_, err = store.GetGuest(ctx, e.pool, g.ID)
	require.ErrorIs(t, err, rackcloud.ErrNotFound)
	require.Equal(t, rackcloud.HostAvailable, e.hostState())
	n, err := store.CountGuestsOnHost(ctx, e.pool, e.host.ID)
	require.NoError(t, err)
	require.Zero(t, n)
}

// A failed install fails the host with its reason and the guest with the
// task's error; the claim is released.
func TestBareMetalGuestInstallFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newBMEnv(t)
	g, create := e.createToInstaller("metal")
	e.event(rackcloud.BootEventInstall, rackcloud.InstallReport{Phase: rackcloud.InstallFailed, Disk: "/dev/vda",
		Reason: rackcloud.FailChecksumMismatch, Error: "read back sha256:00"})
	info := e.wait(create)
	require.Equal(t, rackcloud.TaskFailed, info.State)
	h, err := store.GetHost(ctx, e.pool, e.host.ID)
	require.NoError(t, err)
	require.Equal(t, rackcloud.HostFailed, h.State)
	require.Equal(t, rackcloud.FailChecksumMismatch, h.Failure.Reason)
	g = e.get(g.ID)
	require.Equal(t, rackcloud.GuestFailed, g.State)
	require.Empty(t, g.HostID, "the claim is released")
	require.Contains(t, g.StateReason, "checksum_mismatch")
}

// A create that fails after the image was installed (the host does not
// power on for the driver) undoes itself: the host is moved to
// deprovisioning in the same transaction that submits its wipe, before the
// claim is released, so no other guest is placed on the tenant's bytes.
func TestBareMetalGuestUndoWipesTheHost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newBMEnv(t)
	e.drv.broken.Store(true)
	g, create := e.createToInstaller("metal")
	e.event(rackcloud.BootEventInstall, rackcloud.InstallReport{Phase: rackcloud.InstallWritten, Disk: "/dev/vda", SHA256: e.image.Checksum})
	info := e.wait(create)
	require.Equal(t, rackcloud.TaskFailed, info.State)
	require.Contains(t, info.Error, "BMC busy")
	g = e.get(g.ID)
	require.Equal(t, rackcloud.GuestFailed, g.State)
	require.Empty(t, g.HostID, "the claim is released")
	h, err := store.GetHost(ctx, e.pool, e.host.ID)
	require.NoError(t, err)
	require.Equal(t, rackcloud.HostDeprovisioning, h.State, "never ready and unclaimed before the wipe")
	wipes, err := e.engine.List(ctx, tasks.ListOptions{Kind: rackcloud.KindHostDeprovision, Limit: 10})
	require.NoError(t, err)
	require.Len(t, wipes, 1)
	e.waitCalls("PXE into the wipe", "disk", "off", "pxe")
	e.event(rackcloud.BootEventInventory, rackcloud.Inventory{CPUs: 8, MemoryMiB: 16384, Firmware: "bios",
		Disks: []rackcloud.InventoryDisk{{Name: "vda", SizeBytes: 20 << 30}}, Wiped: []string{"vda"}})
	require.Equal(t, rackcloud.TaskSucceeded, e.wait(wipes[0].ID).State)
	require.Equal(t, rackcloud.HostAvailable, e.hostState())
}
