package provisioner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/provisioner"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fakeBMC records the calls and answers with err.
type fakeBMC struct {
	mu    sync.Mutex
	calls []string
	err   error
	macs  []string // what MACs answers; nil: unsupported (IPMI)
}

func (f *fakeBMC) bmc() provisioner.BMC {
	rec := func(op string) func(context.Context, string) error {
		return func(_ context.Context, id string) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.calls = append(f.calls, op+" "+id)
			return f.err
		}
	}
	return provisioner.BMCFuncs{PXEBootFunc: rec("pxe"), PowerOffFunc: rec("off"), DiskBootFunc: rec("disk"),
		MACsFunc: func(ctx context.Context, id string) ([]string, error) {
			if err := rec("macs")(ctx, id); err != nil {
				return nil, err
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if f.macs == nil {
				return nil, &bmc.Error{BMC: "ipmi://x", Op: "nics", Kind: bmc.ErrUnsupported, Err: errors.New("IPMI has no way")}
			}
			return f.macs, nil
		}}
}

func (f *fakeBMC) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

type env struct {
	t      *testing.T
	pool   *pgxpool.Pool
	engine *tasks.Engine
	bmc    *fakeBMC
	prov   *provisioner.Provisioner
}

func newEnv(t *testing.T, inspectTimeout time.Duration) *env {
	t.Helper()
	return newEnvWith(t, func(c *provisioner.Config) { c.InspectTimeout = inspectTimeout })
}

func newEnvWith(t *testing.T, configure func(*provisioner.Config)) *env {
	t.Helper()
	pool := pgtest.DB(t)
	engine, err := tasks.New(pool, tasks.Config{Workers: 4, PollInterval: 50 * time.Millisecond, RetryBase: 10 * time.Millisecond,
		RetryMax: 50 * time.Millisecond, Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	f := &fakeBMC{}
	cfg := provisioner.Config{Pool: pool, BMC: f.bmc(), Recheck: time.Hour,
		Overhead: rackcloud.Resources{CPUCores: 1, MemoryMiB: 512}}
	configure(&cfg)
	p := provisioner.New(cfg)
	require.NoError(t, p.Register(engine))
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, engine.Start(ctx))
	t.Cleanup(func() {
		cancel()
		require.NoError(t, engine.Stop(context.Background()))
	})
	return &env{t: t, pool: pool, engine: engine, bmc: f, prov: p}
}

const mac = "52:54:00:be:00:01"

func (e *env) host(name string, withBMC bool) rackcloud.Host {
	e.t.Helper()
	h := rackcloud.Host{Meta: rackcloud.Meta{Name: name}, MACs: []string{mac}}
	if withBMC {
		h.BMC = &rackcloud.BMC{Address: "127.0.0.1:16299", Protocol: rackcloud.BMCIPMI, Username: "admin"}
	}
	h, err := store.CreateHost(context.Background(), e.pool, h)
	require.NoError(e.t, err)
	return h
}

func (e *env) enroll(h rackcloud.Host, booted bool) string {
	e.t.Helper()
	info, err := e.engine.Submit(context.Background(), e.pool, tasks.Submission{Kind: rackcloud.KindHostEnroll, Target: "host/" + h.ID,
		Params: provisioner.EnrollParams{HostTaskParams: rackcloud.HostTaskParams{HostID: h.ID}, Booted: booted}})
	require.NoError(e.t, err)
	return info.ID
}

// report stores the agent's inventory as the boot service would and wakes
// the task, as the API does.
func (e *env) report(h rackcloud.Host, inv any) {
	e.t.Helper()
	ctx := context.Background()
	b, err := json.Marshal(inv)
	require.NoError(e.t, err)
	_, err = store.InsertBootEvents(ctx, e.pool, []store.BootEvent{{MAC: mac, HostID: h.ID, Kind: "inventory", Data: b, At: time.Now()}})
	require.NoError(e.t, err)
	_, err = e.engine.Wake(ctx, e.pool, "host/"+h.ID)
	require.NoError(e.t, err)
}

func (e *env) waitTask(id string) *tasks.Info {
	e.t.Helper()
	var info *tasks.Info
	labtest.Eventually(e.t, 30*time.Second, 20*time.Millisecond, "task "+id+" to end", func() (bool, string) {
		var err error
		info, err = e.engine.Get(context.Background(), id)
		require.NoError(e.t, err)
		return info.State.Terminal(), fmt.Sprintf("%+v", info.Task)
	})
	return info
}

func (e *env) waitFor(id, what string) {
	e.t.Helper()
	labtest.Eventually(e.t, 30*time.Second, 20*time.Millisecond, "task "+id+" to wait for "+what, func() (bool, string) {
		info, err := e.engine.Get(context.Background(), id)
		require.NoError(e.t, err)
		return strings.Contains(info.WaitingFor, what), fmt.Sprintf("%+v", info.Task)
	})
}

func (e *env) get(id string) rackcloud.Host {
	h, err := store.GetHost(context.Background(), e.pool, id)
	require.NoError(e.t, err)
	return h
}

var inventory = rackcloud.Inventory{CPUs: 4, MemoryMiB: 8192, Firmware: "bios",
	Disks: []rackcloud.InventoryDisk{{Name: "vda", SizeBytes: 20 << 30}, {Name: "vdb", SizeBytes: 10 << 30}},
	NICs:  []rackcloud.InventoryNIC{{Name: "eth0", MAC: mac, Speed: 1000}}}

// Enroll by BMC (journey 2): the host is made inspecting, powered on into
// PXE, waits (holding no worker) for the agent's report, becomes available
// with the resources of its inventory, and is powered off.
func TestEnrollByBMC(t *testing.T) {
	t.Parallel()
	e := newEnv(t, time.Hour)
	h := e.host("enroll-bmc", true)
	// The report of an earlier boot (stored before the task powers the
	// host on) does not count: the task waits for its own boot's.
	e.report(h, rackcloud.Inventory{CPUs: 1, MemoryMiB: 1})
	id := e.enroll(h, false)
	e.waitFor(id, "inventory")
	require.Equal(t, rackcloud.HostInspecting, e.get(h.ID).State)
	require.Equal(t, &rackcloud.HostTask{ID: id, Kind: rackcloud.KindHostEnroll, Step: provisioner.StepAwaitInventory,
		WaitingFor: "inventory from the host's agent"}, e.get(h.ID).Task, "the host shows what is being done to it")
	require.Equal(t, []string{"pxe " + h.ID}, e.bmc.Calls())

	// A bad report is not taken.
	e.report(h, map[string]any{"cpus": 0})
	e.waitFor(id, "a valid inventory")
	e.report(h, inventory)
	info := e.waitTask(id)
	require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
	got := e.get(h.ID)
	require.Equal(t, rackcloud.HostAvailable, got.State)
	require.Nil(t, got.Failure)
	require.Nil(t, got.Task, "no task at work any more")
	require.Equal(t, rackcloud.Resources{CPUCores: 4, MemoryMiB: 8192, DiskGiB: 30, NetworkMbs: 1000}, got.Resources)
	require.Equal(t, &inventory, got.Inventory)
	require.Equal(t, rackcloud.Resources{CPUCores: 1, MemoryMiB: 512}, got.Overhead, "the default overhead of a host without its own")
	require.Equal(t, []string{"pxe " + h.ID, "off " + h.ID}, e.bmc.Calls())
}

// A host its own netboot discovered is already in the inspection image:
// nothing is asked of a BMC.
func TestEnrollBooted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, time.Hour)
	h := e.host("enroll-booted", false)
	id := e.enroll(h, true)
	e.waitFor(id, "inventory")
	e.report(h, inventory)
	require.Equal(t, rackcloud.TaskSucceeded, e.waitTask(id).State)
	require.Equal(t, rackcloud.HostAvailable, e.get(h.ID).State)
	require.Empty(t, e.bmc.Calls())
}

// Failures leave the host failed with a typed reason, the step and the
// state a retry resumes in; a retry (enroll again) goes on from there.
func TestEnrollFailures(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct {
		bmcErr  error
		timeout time.Duration
		reason  rackcloud.FailureReason
		step    string
		calls   int
	}{
		"wrong password": {bmcErr: &bmc.Error{BMC: "ipmi://x", Op: "open", Kind: bmc.ErrAuth, Err: errors.New("session refused")},
			timeout: time.Hour, reason: rackcloud.FailBMCRefused, step: provisioner.StepPXEPowerOn, calls: 1},
		"unreachable": {bmcErr: &bmc.Error{BMC: "ipmi://x", Op: "open", Kind: bmc.ErrTimeout, Err: errors.New("no answer")},
			timeout: time.Hour, reason: rackcloud.FailBMCUnreachable, step: provisioner.StepPXEPowerOn, calls: 3},
		"agent never reports": {timeout: 300 * time.Millisecond, reason: rackcloud.FailAgentTimeout, step: provisioner.StepAwaitInventory, calls: 1},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, c.timeout)
			e.bmc.err = c.bmcErr
			h := e.host("fail", true)
			info := e.waitTask(e.enroll(h, false))
			require.Equal(t, rackcloud.TaskFailed, info.State)
			got := e.get(h.ID)
			require.Equal(t, rackcloud.HostFailed, got.State)
			require.NotNil(t, got.Failure)
			require.Equal(t, c.reason, got.Failure.Reason, got.Failure.Detail)
			require.Equal(t, c.step, got.Failure.Step)
			require.Equal(t, rackcloud.HostInspecting, got.Failure.In)
			require.Equal(t, info.ID, got.Failure.TaskID)
			require.NotEmpty(t, got.StateReason)
			require.Len(t, e.bmc.Calls(), c.calls, "%v", e.bmc.Calls())

			// Fixed (the BMC answers, the agent reports): enrolling again
			// resumes inspecting from failed and ends available.
			e.bmc.mu.Lock()
			e.bmc.err = nil
			e.bmc.mu.Unlock()
			id := e.enroll(h, false)
			e.waitFor(id, "inventory")
			e.report(h, inventory)
			require.Equal(t, rackcloud.TaskSucceeded, e.waitTask(id).State)
			require.Equal(t, rackcloud.HostAvailable, e.get(h.ID).State)
			require.Nil(t, e.get(h.ID).Failure)
		})
	}
}

func TestFailureFor(t *testing.T) {
	for _, c := range []struct {
		step, err string
		want      rackcloud.FailureReason
	}{
		{"pxe-power-on", "step pxe-power-on failed (permanent): bmc_refused: wrong user or password", rackcloud.FailBMCRefused},
		{"pxe-power-on", "step pxe-power-on failed after 3 attempt(s): bmc_unreachable: no answer", rackcloud.FailBMCUnreachable},
		{"await-inventory", "step await-inventory failed (permanent): wait timed out: waited 10m0s for inventory", rackcloud.FailAgentTimeout},
		{"available", "step available failed after 3 attempt(s): connection refused", rackcloud.FailInternal},
	} {
		require.Equal(t, c.want, provisioner.FailureFor(c.step, c.err), c.err)
	}
	require.Equal(t, "wrong user or password", provisioner.FailureDetail(rackcloud.FailBMCRefused,
		"step pxe-power-on failed (permanent): bmc_refused: wrong user or password"))
	require.Equal(t, "wait timed out: waited 10m0s for inventory", provisioner.FailureDetail(rackcloud.FailAgentTimeout,
		"step await-inventory failed (permanent): wait timed out: waited 10m0s for inventory"))
	require.Equal(t, "connection refused", provisioner.FailureDetail(rackcloud.FailInternal,
		"step available failed after 3 attempt(s): connection refused"))
}

// A host registered by its BMC alone learns its MACs from the BMC before
// it is powered on, so that its boot is recognised as this host; an IPMI
// BMC cannot tell them (no_dhcp, saying what to do), and a MAC another host
// already has is a conflict named in the failure.
func TestEnrollLearnsMACsFromTheBMC(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const learnt = "52:54:00:be:00:09"
	for name, c := range map[string]struct {
		macs   []string
		other  bool // another host has the MAC already
		reason rackcloud.FailureReason
		detail string
	}{
		"redfish":       {macs: []string{"52:54:00:BE:00:09"}},
		"ipmi":          {reason: rackcloud.FailNoDHCP, detail: "register its boot NIC's MAC"},
		"booted before": {macs: []string{learnt}, other: true, reason: rackcloud.FailNoDHCP, detail: "belongs to host discovered-early"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, time.Hour)
			e.bmc.macs = c.macs
			h, err := store.CreateHost(ctx, e.pool, rackcloud.Host{Meta: rackcloud.Meta{Name: "by-bmc"},
				BMC: &rackcloud.BMC{Address: "127.0.0.1:16399", Protocol: rackcloud.BMCRedfish, Username: "admin"}})
			require.NoError(t, err)
			if c.other {
				_, err := store.CreateHost(ctx, e.pool, rackcloud.Host{Meta: rackcloud.Meta{Name: "discovered-early"}, MACs: []string{learnt}})
				require.NoError(t, err)
			}
			id := e.enroll(h, false)
			if c.reason != "" {
				require.Equal(t, rackcloud.TaskFailed, e.waitTask(id).State)
				got := e.get(h.ID)
				require.Equal(t, c.reason, got.Failure.Reason)
				require.Equal(t, provisioner.StepLearnMACs, got.Failure.Step)
				require.Contains(t, got.Failure.Detail, c.detail)
				require.Equal(t, []string{"macs " + h.ID}, e.bmc.Calls(), "never powered on")
				return
			}
			e.waitFor(id, "inventory")
			require.Equal(t, []string{learnt}, e.get(h.ID).MACs, "normalised, stored before the power-on")
			require.Equal(t, []string{"macs " + h.ID, "pxe " + h.ID}, e.bmc.Calls())
			_, err = store.InsertBootEvents(ctx, e.pool, []store.BootEvent{{MAC: learnt, HostID: h.ID, Kind: "inventory",
				Data: []byte(`{"cpus":2,"memory_mib":1024}`), At: time.Now()}})
			require.NoError(t, err)
			_, err = e.engine.Wake(ctx, e.pool, "host/"+h.ID)
			require.NoError(t, err)
			require.Equal(t, rackcloud.TaskSucceeded, e.waitTask(id).State)
			require.Equal(t, rackcloud.HostAvailable, e.get(h.ID).State)
		})
	}
}

// Deprovision wipes a host back to available: it boots for deprovisioning,
// only a report that says the disks were wiped counts, and it ends
// available and powered off. A failed host is reset the same way.
func TestDeprovisionAndReset(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, time.Hour)
	h := e.host("wipe-me", true)
	id := e.enroll(h, false)
	e.waitFor(id, "inventory")
	e.report(h, inventory)
	require.Equal(t, rackcloud.TaskSucceeded, e.waitTask(id).State)

	deprovision := func() string {
		info, err := e.engine.Submit(ctx, e.pool, tasks.Submission{Kind: rackcloud.KindHostDeprovision, Target: "host/" + h.ID,
			Params: rackcloud.HostTaskParams{HostID: h.ID}})
		require.NoError(t, err)
		return info.ID
	}
	id = deprovision()
	e.waitFor(id, "wipe")
	require.Equal(t, rackcloud.HostDeprovisioning, e.get(h.ID).State)
	e.report(h, inventory) // an agent that did not wipe
	e.waitFor(id, "its last report did not")
	wiped := inventory
	wiped.Wiped = []string{"vda", "vdb"}
	e.report(h, wiped)
	info := e.waitTask(id)
	require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
	require.Equal(t, rackcloud.HostAvailable, e.get(h.ID).State)
	require.Equal(t, []string{"pxe " + h.ID, "off " + h.ID, "pxe " + h.ID, "off " + h.ID}, e.bmc.Calls())

	// Failed while deprovisioning (the agent never wiped): reset resumes.
	_, err := store.TransitionHost(ctx, e.pool, h.ID, store.Transition{From: rackcloud.HostAvailable, To: rackcloud.HostInspecting})
	require.NoError(t, err)
	_, err = store.TransitionHost(ctx, e.pool, h.ID, store.Transition{From: rackcloud.HostInspecting, To: rackcloud.HostFailed,
		Failure: &rackcloud.HostFailure{Reason: rackcloud.FailAgentTimeout}})
	require.NoError(t, err)
	id = deprovision()
	e.waitFor(id, "wipe")
	e.report(h, wiped)
	require.Equal(t, rackcloud.TaskSucceeded, e.waitTask(id).State)
	got := e.get(h.ID)
	require.Equal(t, rackcloud.HostAvailable, got.State)
	require.Nil(t, got.Failure)
}
