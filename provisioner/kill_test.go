package provisioner_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/lab/proc"
	"github.com/rackcloud/rackcloud/provisioner"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// TestKill9ReplicasMidInstall provisions a host on replica processes
// (provworker: the provisioner on a task engine, its BMC calls recorded)
// and SIGKILLs them: the first while the install is under way (the
// installer runs in the host, the task waits), the second in the middle
// of the boot-disk step. A third finishes: the host is ready, it was
// PXE-booted into the installer once (the image was not written again),
// and only the interrupted disk boot was done twice.
func TestKill9ReplicasMidInstall(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.DB(t)
	url := pgtest.URL(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "provworker")
	build := exec.Command("go", "build", "-o", bin, "./internal/provworker")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build provworker: %v\n%s", err, out)
	}
	_, err := pool.Exec(ctx, `CREATE TABLE prov_bmc_calls (id bigserial PRIMARY KEY, worker text NOT NULL, op text NOT NULL,
		host_id text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`)
	require.NoError(t, err)
	key := hex.EncodeToString(store.NewSecretKey())

	// An engine that runs nothing submits, as an API-only replica does.
	api, err := tasks.New(pool, tasks.Config{Workers: -1, Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	require.NoError(t, provisioner.New(provisioner.Config{Pool: pool}).Register(api))

	h, err := store.CreateHost(ctx, pool, rackcloud.Host{Meta: rackcloud.Meta{Name: "kill"}, MACs: []string{mac},
		BMC: &rackcloud.BMC{Address: "127.0.0.1:16299", Protocol: rackcloud.BMCIPMI, Username: "admin"}})
	require.NoError(t, err)
	for _, to := range []rackcloud.HostState{rackcloud.HostInspecting, rackcloud.HostAvailable} {
		from := rackcloud.HostDiscovered
		if to == rackcloud.HostAvailable {
			from = rackcloud.HostInspecting
			_, err = store.SetHostInventory(ctx, pool, h.ID, inventory, provisioner.Resources(inventory), rackcloud.Resources{})
			require.NoError(t, err)
		}
		_, err = store.TransitionHost(ctx, pool, h.ID, store.Transition{From: from, To: to})
		require.NoError(t, err)
	}
	im, err := store.CreateImage(ctx, pool, rackcloud.Image{Meta: rackcloud.Meta{Name: "kill-img"}, URL: "http://10.88.0.1:8080/files/d.img.zst",
		Checksum: "sha256:" + strings.Repeat("cd", 32), Format: rackcloud.FormatRawZstd, Size: 1 << 30, Roles: []rackcloud.HostRole{rackcloud.RoleDocker}})
	require.NoError(t, err)

	start := func(name, block string) *proc.Process {
		p, err := proc.Start(proc.Spec{Name: name, Path: bin, Args: []string{"-db", url, "-id", name, "-key", key, "-block", block},
			Log: filepath.Join(dir, name+".log")})
		require.NoError(t, err)
		t.Cleanup(func() { p.Stop(syscall.SIGTERM, 10*time.Second) })
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		require.NoError(t, p.WaitFunc(wctx, func() bool {
			b, _ := os.ReadFile(filepath.Join(dir, name+".log"))
			return bytes.Contains(b, []byte("ready"))
		}), p.LogTail(20))
		return p
	}
	calls := func(op string) int {
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM prov_bmc_calls WHERE op = $1`, op).Scan(&n))
		return n
	}
	waitStep := func(id, step, waiting string) {
		labtest.Eventually(t, 90*time.Second, 50*time.Millisecond, "task at "+step+" "+waiting, func() (bool, string) {
			info, err := api.Get(ctx, id)
			require.NoError(t, err)
			require.False(t, info.State.Terminal(), "task ended: %s", info.Error)
			return info.StepName == step && strings.Contains(info.WaitingFor, waiting), fmt.Sprintf("%+v", info.Task)
		})
	}
	event := func(kind rackcloud.BootEventKind, data any) {
		b, err := json.Marshal(data)
		require.NoError(t, err)
		_, err = store.InsertBootEvents(ctx, pool, []store.BootEvent{{MAC: mac, HostID: h.ID, Kind: string(kind), IP: "10.88.0.60", Data: b, At: time.Now()}})
		require.NoError(t, err)
	}

	w1 := start("w1", "")
	info, err := api.Submit(ctx, pool, tasks.Submission{Kind: rackcloud.KindHostProvision, Target: "host/" + h.ID,
		Params: rackcloud.HostProvisionParams{HostID: h.ID, Role: rackcloud.RoleDocker, ImageID: im.ID}})
	require.NoError(t, err)
	id := info.ID
	event(rackcloud.BootEventInstall, rackcloud.InstallReport{Phase: rackcloud.InstallStarted}) // before power-on: not this boot's
	waitStep(id, provisioner.StepAwaitInstall, "the installer")
	event(rackcloud.BootEventInstall, rackcloud.InstallReport{Phase: rackcloud.InstallProgress, Disk: "/dev/vda", Bytes: 1 << 29, Total: 1 << 30})
	waitStep(id, provisioner.StepAwaitInstall, "50%")

	// The installer is half way; the replica that started the task dies,
	// another (whose disk boot will hang) takes over.
	w2 := start("w2", "disk")
	w1.Stop(syscall.SIGKILL, 10*time.Second)
	event(rackcloud.BootEventInstall, rackcloud.InstallReport{Phase: rackcloud.InstallWritten, Disk: "/dev/vda", SHA256: im.Checksum})
	labtest.Eventually(t, 60*time.Second, 50*time.Millisecond, "w2 blocked in the disk boot", func() (bool, string) {
		b, _ := os.ReadFile(filepath.Join(dir, "w2.log"))
		return bytes.Contains(b, []byte("blocked in disk")), w2.LogTail(5)
	})
	w2.Stop(syscall.SIGKILL, 10*time.Second)
	start("w3", "")
	waitStep(id, provisioner.StepAwaitFirstBoot, "first heartbeat")
	event(rackcloud.BootEventHeartbeat, rackcloud.Heartbeat{HostID: h.ID})
	labtest.Eventually(t, 60*time.Second, 50*time.Millisecond, "task to end", func() (bool, string) {
		info, err = api.Get(ctx, id)
		require.NoError(t, err)
		return info.State.Terminal(), fmt.Sprintf("%+v", info.Task)
	})
	require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
	got, err := store.GetHost(ctx, pool, h.ID)
	require.NoError(t, err)
	require.Equal(t, rackcloud.HostReady, got.State)
	require.Equal(t, "tcp://10.88.0.60:2376", got.Endpoint)
	require.Equal(t, 1, calls("pxe"), "the host was PXE-booted into the installer once: the image was written once")
	require.Equal(t, 2, calls("disk"), "the disk boot w2 was killed in was done again by w3")
}
