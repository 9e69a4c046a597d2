package vmctl_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
	"github.com/rackcloud/rackcloud/vmctl"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fakeDriver keeps guests in memory per host (the unit tests' stand-in
// for libvirtd and dockerd; the real ones are tested in libvirt_test.go
// and docker_test.go).
type fakeDriver struct {
	mu     sync.Mutex
	guests map[string]vmctl.Observed // host/guest -> state
	calls  []string
	// fail makes an operation fail: op -> error.
	fail map[string]error
}

func newFake() *fakeDriver {
	return &fakeDriver{guests: map[string]vmctl.Observed{}, fail: map[string]error{}}
}

func (f *fakeDriver) op(op string, t vmctl.Target, s vmctl.Spec) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, op+" "+t.HostID[:4]+" "+s.Name)
	return t.HostID + "/" + s.GuestID, f.fail[op]
}

func (f *fakeDriver) Prepare(_ context.Context, t vmctl.Target, s vmctl.Spec) error {
	_, err := f.op("prepare", t, s)
	return err
}

func (f *fakeDriver) Create(_ context.Context, t vmctl.Target, s vmctl.Spec) (string, error) {
	k, err := f.op("create", t, s)
	if err != nil {
		return "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.guests[k]; !ok {
		f.guests[k] = vmctl.Observed{State: vmctl.ObservedStopped, Handle: "h-" + s.GuestID[:8]}
	}
	return f.guests[k].Handle, nil
}

func (f *fakeDriver) set(op string, t vmctl.Target, s vmctl.Spec, st vmctl.ObservedState) error {
	k, err := f.op(op, t, s)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.guests[k]
	if !ok {
		return fmt.Errorf("%w: no guest %s", rackcloud.ErrNotFound, s.Name)
	}
	o.State = st
	f.guests[k] = o
	return nil
}

func (f *fakeDriver) Start(_ context.Context, t vmctl.Target, s vmctl.Spec) error {
	return f.set("start", t, s, vmctl.ObservedRunning)
}

func (f *fakeDriver) Stop(_ context.Context, t vmctl.Target, s vmctl.Spec, _ time.Duration) error {
	return f.set("stop", t, s, vmctl.ObservedStopped)
}

func (f *fakeDriver) Reboot(_ context.Context, t vmctl.Target, s vmctl.Spec) error {
	return f.set("reboot", t, s, vmctl.ObservedRunning)
}

func (f *fakeDriver) Delete(_ context.Context, t vmctl.Target, s vmctl.Spec) error {
	k, err := f.op("delete", t, s)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.guests, k)
	return nil
}

func (f *fakeDriver) Observe(_ context.Context, t vmctl.Target, s vmctl.Spec) (vmctl.Observed, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.guests[t.HostID+"/"+s.GuestID]
	if !ok {
		return vmctl.Observed{State: vmctl.ObservedMissing}, nil
	}
	return o, nil
}

func (f *fakeDriver) Probe(_ context.Context, t vmctl.Target) (vmctl.Capacity, error) {
	if err := f.fail["probe"]; err != nil {
		return vmctl.Capacity{}, err
	}
	return vmctl.Capacity{Resources: rackcloud.Resources{CPUCores: 8, MemoryMiB: 16384, DiskGiB: 200}, Daemon: "fake 1.0"}, nil
}

func (f *fakeDriver) ExportDisk(_ context.Context, t vmctl.Target, s vmctl.Spec) (io.ReadCloser, int64, error) {
	f.op("export", t, s)
	return io.NopCloser(strings.NewReader("disk")), 4, nil
}

func (f *fakeDriver) ImportDisk(_ context.Context, t vmctl.Target, s vmctl.Spec, r io.Reader, size int64) error {
	_, err := f.op("import", t, s)
	return err
}

func (f *fakeDriver) crash(hostID, guestID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.guests[hostID+"/"+guestID]
	o.State, o.Detail = vmctl.ObservedCrashed, "exited with code 3"
	f.guests[hostID+"/"+guestID] = o
}

func (f *fakeDriver) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

type venv struct {
	t       *testing.T
	pool    *pgxpool.Pool
	engine  *tasks.Engine
	drv     *fakeDriver
	vm      *vmctl.Controller
	reg     *prometheus.Registry // the controller's metrics
	project string
	image   string
	racks   []string
}

func newVenv(t *testing.T, racks int) *venv {
	t.Helper()
	return newVenvWith(t, racks, nil)
}

// newVenvWith runs the controller with drivers (nil: the fake, for both
// kinds).
func newVenvWith(t *testing.T, racks int, drivers map[rackcloud.GuestKind]vmctl.Driver) *venv {
	t.Helper()
	return newVenvAlso(t, racks, drivers, nil)
}

// newVenvAlso is newVenvWith that also registers more task kinds (also,
// when not nil) on the engine before it starts.
func newVenvAlso(t *testing.T, racks int, drivers map[rackcloud.GuestKind]vmctl.Driver, also func(*pgxpool.Pool, *tasks.Engine)) *venv {
	t.Helper()
	ctx := context.Background()
	pool := pgtest.DB(t)
	engine, err := tasks.New(pool, tasks.Config{Workers: 8, PollInterval: 50 * time.Millisecond, RetryBase: 10 * time.Millisecond,
		RetryMax: 50 * time.Millisecond, Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	drv := newFake()
	if drivers == nil {
		drivers = map[rackcloud.GuestKind]vmctl.Driver{rackcloud.GuestContainer: drv, rackcloud.GuestVM: drv}
	}
	metrics := prometheus.NewRegistry()
	vm := vmctl.New(vmctl.Config{Pool: pool, Reconcile: -1, StopGrace: time.Second, Drivers: drivers, Registerer: metrics})
	require.NoError(t, vm.Register(engine))
	if also != nil {
		also(pool, engine)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = vm.Run(rctx) }()
	require.NoError(t, engine.Start(rctx))
	t.Cleanup(func() {
		cancel()
		require.NoError(t, engine.Stop(context.Background()))
		<-done
	})
	e := &venv{t: t, pool: pool, engine: engine, drv: drv, vm: vm, reg: metrics}
	p, err := store.CreateProject(ctx, pool, rackcloud.Project{Meta: rackcloud.Meta{Name: "p"}})
	require.NoError(t, err)
	e.project = p.ID
	_, err = store.SetQuota(ctx, pool, p.ID, 0, rackcloud.Resources{CPUCores: 1000, MemoryMiB: 1 << 30, DiskGiB: 1 << 20}, 10)
	require.NoError(t, err)
	im, err := store.CreateImage(ctx, pool, rackcloud.Image{Meta: rackcloud.Meta{Name: "img"}, URL: "http://127.0.0.1:1/img",
		Checksum: "sha256:" + strings.Repeat("0", 64), Format: rackcloud.FormatDockerArchive})
	require.NoError(t, err)
	e.image = im.ID
	reg, err := store.CreateRegion(ctx, pool, rackcloud.Region{Meta: rackcloud.Meta{Name: "reg"}})
	require.NoError(t, err)
	z, err := store.CreateZone(ctx, pool, rackcloud.Zone{Meta: rackcloud.Meta{Name: "z"}, RegionID: reg.ID})
	require.NoError(t, err)
	for i := range racks {
		r, err := store.CreateRack(ctx, pool, rackcloud.Rack{Meta: rackcloud.Meta{Name: fmt.Sprintf("r%d", i)}, ZoneID: z.ID, Positions: 42})
		require.NoError(t, err)
		e.racks = append(e.racks, r.ID)
	}
	return e
}

// host makes a ready docker host in rack (index) with cpus and mem.
func (e *venv) host(name string, rack, cpus int, mem int64, labels rackcloud.Labels) string {
	e.t.Helper()
	h, err := store.CreateHost(context.Background(), e.pool, rackcloud.Host{Meta: rackcloud.Meta{Name: name, Labels: labels},
		RackID: e.racks[rack], Role: rackcloud.RoleDocker, State: rackcloud.HostReady,
		Resources: rackcloud.Resources{CPUCores: cpus, MemoryMiB: mem, DiskGiB: 100}})
	require.NoError(e.t, err)
	require.NoError(e.t, store.SetHostEndpoint(context.Background(), e.pool, h.ID, "unix:///fake/"+name+".sock"))
	return h.ID
}

func (e *venv) guest(name string, cpus int, mem int64, mod func(*rackcloud.Guest)) rackcloud.Guest {
	e.t.Helper()
	g := rackcloud.Guest{Meta: rackcloud.Meta{Name: name}, ProjectID: e.project, Kind: rackcloud.GuestContainer,
		Flavor: rackcloud.Resources{CPUCores: cpus, MemoryMiB: mem, DiskGiB: 1}, ImageID: e.image}
	if mod != nil {
		mod(&g)
	}
	g, err := store.CreateGuest(context.Background(), e.pool, g)
	require.NoError(e.t, err)
	return g
}

func (e *venv) run(kind string, params any, target string) *tasks.Info {
	e.t.Helper()
	ctx := context.Background()
	info, err := e.engine.Submit(ctx, e.pool, tasks.Submission{Kind: kind, Target: target, Params: params})
	require.NoError(e.t, err)
	labtest.Eventually(e.t, 30*time.Second, 20*time.Millisecond, kind+" to end", func() (bool, string) {
		info, err = e.engine.Get(ctx, info.ID)
		require.NoError(e.t, err)
		return info.State.Terminal(), fmt.Sprintf("%+v", info.Task)
	})
	return info
}

func (e *venv) guestTask(kind string, g rackcloud.Guest) *tasks.Info {
	return e.run(kind, rackcloud.GuestTaskParams{GuestID: g.ID}, "guest/"+g.ID)
}

func (e *venv) get(id string) rackcloud.Guest {
	g, err := store.GetGuest(context.Background(), e.pool, id)
	require.NoError(e.t, err)
	return g
}

// waitSnapshot waits until the placement snapshot holds n hosts.
func (e *venv) waitSnapshot(n int) {
	labtest.Eventually(e.t, 10*time.Second, 10*time.Millisecond, "the snapshot to hold the hosts", func() (bool, string) {
		return e.vm.Keeper().Len() == n, fmt.Sprint(e.vm.Keeper().Len())
	})
}

func TestGuestLifecycleThroughTasks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newVenv(t, 1)
	h1 := e.host("d1", 0, 4, 4096, nil)
	e.waitSnapshot(1)

	g := e.guest("web", 1, 512, nil)
	info := e.guestTask(rackcloud.KindGuestCreate, g)
	require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
	g = e.get(g.ID)
	require.Equal(t, rackcloud.GuestRunning, g.State)
	require.Equal(t, h1, g.HostID)
	require.Equal(t, "h-"+g.ID[:8], g.Handle)
	require.Contains(t, g.Placement, "of 1 that fit")
	require.NotNil(t, g.Observed)
	require.Equal(t, "running", g.Observed.State)
	require.Equal(t, []string{"prepare " + h1[:4] + " web", "create " + h1[:4] + " web", "start " + h1[:4] + " web"}, e.drv.Calls())

	require.Equal(t, rackcloud.TaskSucceeded, e.guestTask(rackcloud.KindGuestStop, g).State)
	require.Equal(t, rackcloud.GuestStopped, e.get(g.ID).State)
	require.Equal(t, rackcloud.TaskSucceeded, e.guestTask(rackcloud.KindGuestStart, g).State)
	require.Equal(t, rackcloud.TaskSucceeded, e.guestTask(rackcloud.KindGuestReboot, g).State)
	require.Equal(t, rackcloud.GuestRunning, e.get(g.ID).State)

	// The reconciler reports a crash and never changes what was asked.
	e.drv.crash(h1, g.ID)
	require.NoError(t, e.vm.Reconcile(ctx))
	g = e.get(g.ID)
	require.Equal(t, rackcloud.GuestRunning, g.State, "intended state unchanged")
	require.Equal(t, "crashed", g.Observed.State)
	require.Equal(t, "exited with code 3", g.Observed.Detail)
	evs, err := store.ListGuestEvents(ctx, e.pool, g.ID, 0, 100)
	require.NoError(t, err)
	require.Equal(t, "placed", evs[0].Kind)
	require.Equal(t, "running -> crashed: exited with code 3", evs[len(evs)-1].Detail)
	require.NoError(t, e.vm.Reconcile(ctx))
	evs2, err := store.ListGuestEvents(ctx, e.pool, g.ID, 0, 100)
	require.NoError(t, err)
	require.Len(t, evs2, len(evs), "no event when nothing changed")
	require.Equal(t, []float64{1}, e.crashes(g.ID), "one crash seen, however often observed")

	require.Equal(t, rackcloud.TaskSucceeded, e.guestTask(rackcloud.KindGuestDelete, g).State)
	_, err = store.GetGuest(ctx, e.pool, g.ID)
	require.ErrorIs(t, err, rackcloud.ErrNotFound)
	require.Empty(t, e.crashes(g.ID), "a deleted guest's series goes with it")
	h, err := store.GetHost(ctx, e.pool, h1)
	require.NoError(t, err)
	require.Equal(t, rackcloud.Resources{}, h.Used)
}

// crashes returns rackcloud_guest_crashes_total of guest id (none: no
// series).
func (e *venv) crashes(id string) []float64 {
	mfs, err := e.reg.Gather()
	require.NoError(e.t, err)
	var out []float64
	for _, mf := range mfs {
		if mf.GetName() != "rackcloud_guest_crashes_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "guest_id" && l.GetValue() == id {
					out = append(out, m.GetCounter().GetValue())
				}
			}
		}
	}
	return out
}

func TestGuestThatFitsNowhereFailsWithAnExplanation(t *testing.T) {
	t.Parallel()
	e := newVenv(t, 1)
	e.host("small", 0, 2, 1024, rackcloud.Labels{"ssd": "true"})
	e.host("big", 0, 16, 65536, nil)
	e.waitSnapshot(2)
	g := e.guest("huge", 4, 4096, func(g *rackcloud.Guest) { g.Constraints = []string{"ssd"} })
	info := e.guestTask(rackcloud.KindGuestCreate, g)
	require.Equal(t, rackcloud.TaskFailed, info.State)
	g = e.get(g.ID)
	require.Equal(t, rackcloud.GuestFailed, g.State)
	require.Empty(t, g.HostID)
	require.Contains(t, g.Placement, "no host fits")
	require.Contains(t, info.Error, "no host fits")
	t.Log(g.Placement)
	require.Empty(t, e.drv.Calls(), "nothing was made")
}

func TestDriverFailureIsCompensated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newVenv(t, 1)
	h1 := e.host("d1", 0, 4, 4096, nil)
	e.waitSnapshot(1)
	e.drv.fail["start"] = fmt.Errorf("%w: the daemon refuses the flavor", rackcloud.ErrInvalid)
	g := e.guest("bad", 1, 512, nil)
	info := e.guestTask(rackcloud.KindGuestCreate, g)
	require.Equal(t, rackcloud.TaskFailed, info.State)
	g = e.get(g.ID)
	require.Equal(t, rackcloud.GuestFailed, g.State)
	require.Empty(t, g.HostID, "the claim is released")
	require.Contains(t, g.StateReason, "the daemon refuses the flavor", "the guest says why")
	require.Contains(t, e.drv.Calls(), "delete "+h1[:4]+" bad", "what was made is removed")
	h, err := store.GetHost(ctx, e.pool, h1)
	require.NoError(t, err)
	require.Equal(t, rackcloud.Resources{}, h.Used)
}

func TestHardRackAntiAffinityRefusesTheFourthSoftPlacesIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newVenv(t, 3)
	for r := range 3 {
		e.host(fmt.Sprintf("h%da", r), r, 8, 8192, nil)
		e.host(fmt.Sprintf("h%db", r), r, 8, 8192, nil)
	}
	e.waitSnapshot(6)
	for _, hard := range []bool{true, false} {
		pg, err := store.CreatePlacementGroup(ctx, e.pool, rackcloud.PlacementGroup{Meta: rackcloud.Meta{Name: fmt.Sprintf("db-%v", hard)},
			ProjectID: e.project, Policy: rackcloud.AntiAffinity, Hard: hard, Scope: rackcloud.ScopeRack})
		require.NoError(t, err)
		racks := map[string]bool{}
		for i := range 4 {
			g := e.guest(fmt.Sprintf("db%d-%v", i, hard), 1, 256, func(g *rackcloud.Guest) { g.PlacementGroupID = pg.ID })
			info := e.guestTask(rackcloud.KindGuestCreate, g)
			g = e.get(g.ID)
			if i < 3 {
				require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
				h, err := store.GetHost(ctx, e.pool, g.HostID)
				require.NoError(t, err)
				require.False(t, racks[h.RackID], "one per rack")
				racks[h.RackID] = true
				continue
			}
			t.Logf("hard=%v: %s", hard, g.Placement)
			if hard {
				require.Equal(t, rackcloud.TaskFailed, info.State)
				require.Contains(t, g.Placement, "no host fits")
				require.Contains(t, g.Placement, "already has 1 guest in every rack")
			} else {
				require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
				require.Contains(t, g.Placement, "soft", "placed anyway, and says so")
			}
		}
	}
}

func TestMigrateMovesTheClaimAndTheGuest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newVenv(t, 1)
	h1 := e.host("d1", 0, 4, 4096, nil)
	e.waitSnapshot(1)
	g := e.guest("mover", 2, 1024, func(g *rackcloud.Guest) { g.Kind = rackcloud.GuestVM })
	// A VM needs a kvm host.
	_, err := e.pool.Exec(ctx, `UPDATE hosts SET role = 'kvm' WHERE id = $1`, h1)
	require.NoError(t, err)
	_, err = e.pool.Exec(ctx, `UPDATE images SET format = 'qcow2' WHERE id = $1`, e.image)
	require.NoError(t, err)
	require.Equal(t, rackcloud.TaskSucceeded, e.guestTask(rackcloud.KindGuestCreate, g).State)

	full := e.run(rackcloud.KindGuestMigrate, rackcloud.GuestMigrateParams{GuestID: g.ID}, "guest/"+g.ID)
	require.Equal(t, rackcloud.TaskFailed, full.State, "no other host")
	require.Contains(t, full.Error, "no host to move")
	g = e.get(g.ID)
	require.Equal(t, h1, g.HostID)

	h2 := e.host("d2", 0, 4, 4096, nil)
	_, err = e.pool.Exec(ctx, `UPDATE hosts SET role = 'kvm' WHERE id = $1`, h2)
	require.NoError(t, err)
	e.waitSnapshot(2)
	// The failed migration started the guest again where it was (a
	// start now changes nothing).
	o, err := e.drv.Observe(ctx, vmctl.Target{HostID: h1}, vmctl.Spec{GuestID: g.ID})
	require.NoError(t, err)
	require.Equal(t, vmctl.ObservedRunning, o.State)
	require.Equal(t, rackcloud.TaskSucceeded, e.guestTask(rackcloud.KindGuestStart, g).State)
	info := e.run(rackcloud.KindGuestMigrate, rackcloud.GuestMigrateParams{GuestID: g.ID}, "guest/"+g.ID)
	require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
	g = e.get(g.ID)
	require.Equal(t, h2, g.HostID)
	require.Equal(t, rackcloud.GuestRunning, g.State)
	calls := strings.Join(e.drv.Calls(), "\n")
	require.Contains(t, calls, "export "+h1[:4]+" mover")
	require.Contains(t, calls, "import "+h2[:4]+" mover")
	require.Contains(t, calls, "delete "+h1[:4]+" mover")
	for _, id := range []string{h1, h2} {
		h, err := store.GetHost(ctx, e.pool, id)
		require.NoError(t, err)
		want := rackcloud.Resources{}
		if id == h2 {
			want = rackcloud.Resources{CPUCores: 2, MemoryMiB: 1024, DiskGiB: 1}
		}
		require.Equal(t, want, h.Used, id)
	}
}

func TestAdoptReadsCapacityAndMakesTheHostReady(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newVenv(t, 1)
	h, err := store.CreateHost(ctx, e.pool, rackcloud.Host{Meta: rackcloud.Meta{Name: "adoptee"}, Role: rackcloud.RoleDocker})
	require.NoError(t, err)
	require.NoError(t, store.SetHostEndpoint(ctx, e.pool, h.ID, "unix:///fake/docker.sock"))
	e.drv.fail["probe"] = errors.New("connection refused")
	info := e.run(rackcloud.KindHostAdopt, rackcloud.HostTaskParams{HostID: h.ID}, "host/"+h.ID)
	require.Equal(t, rackcloud.TaskFailed, info.State)
	require.Contains(t, info.Error, "connection refused")
	got, err := store.GetHost(ctx, e.pool, h.ID)
	require.NoError(t, err)
	require.Equal(t, rackcloud.HostDiscovered, got.State, "nothing changed")

	delete(e.drv.fail, "probe")
	info = e.run(rackcloud.KindHostAdopt, rackcloud.HostTaskParams{HostID: h.ID}, "host/"+h.ID)
	require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
	got, err = store.GetHost(ctx, e.pool, h.ID)
	require.NoError(t, err)
	require.Equal(t, rackcloud.HostReady, got.State)
	require.Equal(t, 8, got.Resources.CPUCores)
	require.Equal(t, int64(512), got.Overhead.MemoryMiB)
}
