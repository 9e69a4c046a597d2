package provisioner_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/provisioner"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// fakeRoles answers role checks with err, recording the addresses.
type fakeRoles struct {
	mu    sync.Mutex
	addrs []string
	err   error
}

func (f *fakeRoles) Check(_ context.Context, _ rackcloud.Host, role rackcloud.HostRole, addr string) (string, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs = append(f.addrs, string(role)+"@"+addr)
	if f.err != nil {
		return "", "", f.err
	}
	return provisioner.DockerEndpoint(addr), "OK", nil
}

func newProvisionEnv(t *testing.T, roles *fakeRoles, firstBoot time.Duration) *env {
	sealer, err := store.NewSealer(store.NewSecretKey())
	require.NoError(t, err)
	return newEnvWith(t, func(c *provisioner.Config) {
		c.Sealer, c.BootURL, c.Roles = sealer, "http://10.88.0.1:8080", roles
		c.InspectTimeout, c.InstallTimeout, c.FirstBootTimeout, c.RoleTimeout = time.Hour, time.Hour, firstBoot, time.Second
		c.Heartbeat = 5 * time.Second
	})
}

// available makes an inspected, available host and a docker image.
func (e *env) available(name string) (rackcloud.Host, rackcloud.Image) {
	e.t.Helper()
	ctx := context.Background()
	h := e.host(name, true)
	_, err := store.TransitionHost(ctx, e.pool, h.ID, store.Transition{From: rackcloud.HostDiscovered, To: rackcloud.HostInspecting})
	require.NoError(e.t, err)
	_, err = store.SetHostInventory(ctx, e.pool, h.ID, inventory, provisioner.Resources(inventory), rackcloud.Resources{})
	require.NoError(e.t, err)
	_, err = store.TransitionHost(ctx, e.pool, h.ID, store.Transition{From: rackcloud.HostInspecting, To: rackcloud.HostAvailable})
	require.NoError(e.t, err)
	im, err := store.CreateImage(ctx, e.pool, rackcloud.Image{Meta: rackcloud.Meta{Name: name + "-img"}, URL: "http://10.88.0.1:8080/files/docker.img.zst",
		Checksum: "sha256:" + strings.Repeat("ab", 32), Format: rackcloud.FormatRawZstd, Size: 2 << 30, Roles: []rackcloud.HostRole{rackcloud.RoleDocker}})
	require.NoError(e.t, err)
	return e.get(h.ID), im
}

func (e *env) provision(h rackcloud.Host, im rackcloud.Image) string {
	e.t.Helper()
	info, err := e.engine.Submit(context.Background(), e.pool, tasks.Submission{Kind: rackcloud.KindHostProvision, Target: "host/" + h.ID,
		Params: rackcloud.HostProvisionParams{HostID: h.ID, Role: rackcloud.RoleDocker, ImageID: im.ID}})
	require.NoError(e.t, err)
	return info.ID
}

// event stores a boot event of kind for h as the boot service would, from
// ip, and wakes the host's task as the API does.
func (e *env) event(h rackcloud.Host, kind rackcloud.BootEventKind, ip string, data any) {
	e.t.Helper()
	ctx := context.Background()
	b, err := json.Marshal(data)
	require.NoError(e.t, err)
	_, err = store.InsertBootEvents(ctx, e.pool, []store.BootEvent{{MAC: mac, HostID: h.ID, Kind: string(kind), IP: ip, Data: b, At: time.Now()}})
	require.NoError(e.t, err)
	_, err = e.engine.Wake(ctx, e.pool, "host/"+h.ID)
	require.NoError(e.t, err)
}

// host.provision: available -> provisioning; an install plan with a host
// token and a certificate; PXE; the installer's progress shows in the
// step; disk boot; the first heartbeat; the role check at the heartbeat's
// address; ready with the endpoint.
func TestProvision(t *testing.T) {
	t.Parallel()
	roles := &fakeRoles{}
	e := newProvisionEnv(t, roles, time.Hour)
	h, im := e.available("prov-ok")
	id := e.provision(h, im)
	e.waitFor(id, "the installer")
	require.Equal(t, rackcloud.HostProvisioning, e.get(h.ID).State)
	require.Equal(t, []string{"pxe " + h.ID}, e.bmc.Calls())

	ctx := context.Background()
	inst, err := store.GetHostInstall(ctx, e.pool, nil, h.ID)
	require.ErrorIs(t, err, store.ErrNoSealer, "the plan does not open without the key")
	sum, err := store.HostTokenSHA256(ctx, e.pool, h.ID)
	require.NoError(t, err)
	require.Len(t, sum, 32)
	_ = inst

	e.event(h, rackcloud.BootEventInstall, "10.88.0.50", rackcloud.InstallReport{Phase: rackcloud.InstallProgress, Disk: "/dev/vda",
		Bytes: 1 << 30, Total: 2 << 30, MBps: 40})
	e.waitFor(id, "/dev/vda [##########..........] 50% of 2048 MB at 40.0 MB/s")
	e.event(h, rackcloud.BootEventInstall, "10.88.0.50", rackcloud.InstallReport{Phase: rackcloud.InstallWritten, Disk: "/dev/vda",
		SHA256: im.Checksum})
	e.waitFor(id, "first heartbeat")
	require.Equal(t, []string{"pxe " + h.ID, "disk " + h.ID}, e.bmc.Calls())
	e.event(h, rackcloud.BootEventHeartbeat, "10.88.0.51", rackcloud.Heartbeat{HostID: h.ID, Kernel: "6.1.0-28-amd64"})
	info := e.waitTask(id)
	require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
	got := e.get(h.ID)
	require.Equal(t, rackcloud.HostReady, got.State)
	require.Equal(t, rackcloud.RoleDocker, got.Role)
	require.Equal(t, im.ID, got.ImageID)
	require.Equal(t, "tcp://10.88.0.51:2376", got.Endpoint)
	require.Equal(t, []string{"docker@10.88.0.51"}, roles.addrs, "the role is checked where the heartbeat came from")
}

// The plan holds a TLS identity from the host CA for the host, and the
// token whose hash is stored.
func TestProvisionPlan(t *testing.T) {
	t.Parallel()
	sealer, err := store.NewSealer(store.NewSecretKey())
	require.NoError(t, err)
	e := newEnvWith(t, func(c *provisioner.Config) {
		c.Sealer, c.BootURL, c.Roles = sealer, "http://10.88.0.1:8080", &fakeRoles{}
		c.InstallTimeout = time.Hour
	})
	h, im := e.available("prov-plan")
	id := e.provision(h, im)
	e.waitFor(id, "the installer")
	ctx := context.Background()
	inst, err := store.GetHostInstall(ctx, e.pool, sealer, h.ID)
	require.NoError(t, err)
	require.Equal(t, id, inst.TaskID)
	c := inst.Config
	require.NoError(t, c.Validate())
	require.Equal(t, h.ID, c.HostID)
	require.Equal(t, mac, c.MAC)
	require.Equal(t, "http://10.88.0.1:8080", c.BootURL)
	require.Contains(t, c.Cert, "BEGIN CERTIFICATE")
	sum := sha256.Sum256([]byte(c.Token))
	stored, err := store.HostTokenSHA256(ctx, e.pool, h.ID)
	require.NoError(t, err)
	require.Equal(t, sum[:], stored)
	ok, err := store.CheckHostToken(ctx, e.pool, h.ID, c.Token)
	require.NoError(t, err)
	require.True(t, ok)
	ok, _ = store.CheckHostToken(ctx, e.pool, h.ID, c.Token+"x")
	require.False(t, ok)
}

// Faults: the installer's checksum_mismatch fails the host with that
// reason at await-install; an OS that never calls in is
// first_boot_timeout; a daemon that does not answer is role_unreachable.
func TestProvisionFailures(t *testing.T) {
	t.Parallel()
	t.Run("checksum", func(t *testing.T) {
		t.Parallel()
		e := newProvisionEnv(t, &fakeRoles{}, time.Hour)
		h, im := e.available("prov-sum")
		id := e.provision(h, im)
		e.waitFor(id, "the installer")
		e.event(h, rackcloud.BootEventInstall, "10.88.0.50", rackcloud.InstallReport{Phase: rackcloud.InstallFailed, Disk: "/dev/vda",
			Reason: rackcloud.FailChecksumMismatch, Error: "read back sha256:00 from /dev/vda"})
		require.Equal(t, rackcloud.TaskFailed, e.waitTask(id).State)
		got := e.get(h.ID)
		require.Equal(t, rackcloud.HostFailed, got.State)
		require.Equal(t, rackcloud.FailChecksumMismatch, got.Failure.Reason)
		require.Equal(t, provisioner.StepAwaitInstall, got.Failure.Step)
		require.Contains(t, got.Failure.Detail, "read back sha256:00")
	})
	t.Run("first boot", func(t *testing.T) {
		t.Parallel()
		e := newProvisionEnv(t, &fakeRoles{}, 300*time.Millisecond)
		h, im := e.available("prov-boot")
		id := e.provision(h, im)
		e.waitFor(id, "the installer")
		e.event(h, rackcloud.BootEventInstall, "10.88.0.50", rackcloud.InstallReport{Phase: rackcloud.InstallWritten})
		require.Equal(t, rackcloud.TaskFailed, e.waitTask(id).State)
		got := e.get(h.ID)
		require.Equal(t, rackcloud.FailFirstBootTimeout, got.Failure.Reason)
		require.Equal(t, provisioner.StepAwaitFirstBoot, got.Failure.Step)
	})
	t.Run("role", func(t *testing.T) {
		t.Parallel()
		e := newProvisionEnv(t, &fakeRoles{err: context.DeadlineExceeded}, time.Hour)
		h, im := e.available("prov-role")
		id := e.provision(h, im)
		e.waitFor(id, "the installer")
		e.event(h, rackcloud.BootEventInstall, "10.88.0.50", rackcloud.InstallReport{Phase: rackcloud.InstallWritten})
		e.waitFor(id, "first heartbeat")
		e.event(h, rackcloud.BootEventHeartbeat, "10.88.0.51", rackcloud.Heartbeat{HostID: h.ID})
		require.Equal(t, rackcloud.TaskFailed, e.waitTask(id).State)
		require.Equal(t, rackcloud.FailRoleUnreachable, e.get(h.ID).Failure.Reason)
	})
}

// rackcloud_hosts counts hosts by state and role, zeros included.
func TestHostsMetric(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	e := newEnvWith(t, func(c *provisioner.Config) { c.Registerer = reg })
	_, err := store.CreateHost(context.Background(), e.pool, rackcloud.Host{Meta: rackcloud.Meta{Name: "metric-a"}, MACs: []string{"52:54:00:be:00:99"}})
	require.NoError(t, err)
	h, _ := e.available("metric-b")
	require.NoError(t, store.SetHostRole(context.Background(), e.pool, h.ID, rackcloud.RoleKVM, ""))
	want := map[string]float64{"discovered/none": 1, "available/kvm": 1, "ready/docker": 0, "failed/none": 0}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "rackcloud_hosts" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var state, role string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "state":
					state = l.GetValue()
				case "role":
					role = l.GetValue()
				}
			}
			got[state+"/"+role] = m.GetGauge().GetValue()
		}
	}
	require.Len(t, got, len(rackcloud.HostStates())*4)
	for k, v := range want {
		require.Equal(t, v, got[k], k)
	}
}

// Fast track: a host whose inspection agent stands by installs from that
// boot (no power-on into the installer); when no install starts within
// the grace, the host is powered on into the installer after all, once.
func TestProvisionFastTrack(t *testing.T) {
	t.Parallel()
	for _, installs := range []bool{true, false} {
		t.Run(fmt.Sprint("installs=", installs), func(t *testing.T) {
			t.Parallel()
			sealer, err := store.NewSealer(store.NewSecretKey())
			require.NoError(t, err)
			e := newEnvWith(t, func(c *provisioner.Config) {
				c.Sealer, c.BootURL, c.Roles = sealer, "http://10.88.0.1:8080", &fakeRoles{}
				c.InstallTimeout, c.FirstBootTimeout, c.FastTrackGrace = time.Hour, time.Hour, 300*time.Millisecond
				c.Recheck = 100 * time.Millisecond
			})
			h, im := e.available(fmt.Sprint("fast-", installs))
			e.event(h, rackcloud.BootEventHTTPScript, "10.88.0.50", nil)
			inv := inventory
			inv.StandbySeconds = 900
			e.event(h, rackcloud.BootEventInventory, "10.88.0.50", inv)
			id := e.provision(h, im)
			if installs {
				e.waitFor(id, "fast track")
				e.event(h, rackcloud.BootEventInstall, "10.88.0.50", rackcloud.InstallReport{Phase: rackcloud.InstallWritten})
				e.waitFor(id, "first heartbeat")
				require.Equal(t, []string{"disk " + h.ID}, e.bmc.Calls(), "no power-on into the installer")
				return
			}
			labtest.Eventually(t, 20*time.Second, 20*time.Millisecond, "the fallback power-on", func() (bool, string) {
				return len(e.bmc.Calls()) == 1, fmt.Sprint(e.bmc.Calls())
			})
			e.event(h, rackcloud.BootEventHTTPScript, "10.88.0.50", nil) // the installer's boot
			e.waitFor(id, "the installer to start")
			// The step runs again (past the grace: it powered on after
			// it) and powers on no more.
			evs, err := e.engine.Events(context.Background(), id, 0, 1000)
			require.NoError(t, err)
			seen := evs[len(evs)-1].Seq
			labtest.Eventually(t, 20*time.Second, 20*time.Millisecond, "the step to run twice more", func() (bool, string) {
				more, err := e.engine.Events(context.Background(), id, seen, 1000)
				require.NoError(t, err)
				runs := 0
				for _, ev := range more {
					if ev.Type == "started" { // a wake-up runs the step again
						runs++
					}
				}
				return runs >= 2, fmt.Sprint(runs, " runs")
			})
			require.Equal(t, []string{"pxe " + h.ID}, e.bmc.Calls())
		})
	}
}
