package vmctl_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/lab/proc"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
	"github.com/rackcloud/rackcloud/vmctl"
)

// fleet is a database of ready docker hosts served by vmworker replica
// processes (vmctl on a task engine, the driver recording each call in
// vm_calls) and an API-only engine that submits.
type fleet struct {
	t       *testing.T
	pool    *pgxpool.Pool
	url     string
	dir     string
	bin     string
	api     *tasks.Engine
	project string
	image   string
	racks   []string
}

func newFleet(t *testing.T, racks int) *fleet {
	t.Helper()
	ctx := context.Background()
	f := &fleet{t: t, pool: pgtest.DB(t), url: pgtest.URL(t), dir: t.TempDir()}
	f.bin = filepath.Join(f.dir, "vmworker")
	if out, err := exec.Command("go", "build", "-o", f.bin, "./internal/vmworker").CombinedOutput(); err != nil {
		t.Fatalf("go build vmworker: %v\n%s", err, out)
	}
	_, err := f.pool.Exec(ctx, `CREATE TABLE vm_calls (id bigserial PRIMARY KEY, worker text, op text, host_id text,
		guest_id text, at timestamptz DEFAULT clock_timestamp())`)
	require.NoError(t, err)
	// An engine that runs nothing submits, as an API-only replica does.
	f.api, err = tasks.New(f.pool, tasks.Config{Workers: -1, Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	require.NoError(t, vmctl.New(vmctl.Config{Pool: f.pool, Reconcile: -1}).Register(f.api))
	p, err := store.CreateProject(ctx, f.pool, rackcloud.Project{Meta: rackcloud.Meta{Name: "p"}})
	require.NoError(t, err)
	f.project = p.ID
	_, err = store.SetQuota(ctx, f.pool, p.ID, 0, rackcloud.Resources{CPUCores: 100000, MemoryMiB: 1 << 40, DiskGiB: 1 << 30}, 10)
	require.NoError(t, err)
	im, err := store.CreateImage(ctx, f.pool, rackcloud.Image{Meta: rackcloud.Meta{Name: "img"}, URL: "http://127.0.0.1:1/img",
		Checksum: "sha256:" + strings.Repeat("0", 64), Format: rackcloud.FormatDockerArchive})
	require.NoError(t, err)
	f.image = im.ID
	reg, err := store.CreateRegion(ctx, f.pool, rackcloud.Region{Meta: rackcloud.Meta{Name: "reg"}})
	require.NoError(t, err)
	z, err := store.CreateZone(ctx, f.pool, rackcloud.Zone{Meta: rackcloud.Meta{Name: "z"}, RegionID: reg.ID})
	require.NoError(t, err)
	for i := range racks {
		r, err := store.CreateRack(ctx, f.pool, rackcloud.Rack{Meta: rackcloud.Meta{Name: fmt.Sprintf("r%d", i)}, ZoneID: z.ID, Positions: 42})
		require.NoError(t, err)
		f.racks = append(f.racks, r.ID)
	}
	return f
}

// host makes a ready docker host that sells exactly n guests of
// 1 vCPU, 256 MiB and 1 GiB (no overhead, no overcommit).
func (f *fleet) host(name string, rack, n int) {
	f.t.Helper()
	ctx := context.Background()
	h, err := store.CreateHost(ctx, f.pool, rackcloud.Host{Meta: rackcloud.Meta{Name: name}, RackID: f.racks[rack],
		Role: rackcloud.RoleDocker, State: rackcloud.HostReady,
		Resources: rackcloud.Resources{CPUCores: n, MemoryMiB: 256 * int64(n), DiskGiB: int64(n)}})
	require.NoError(f.t, err)
	require.NoError(f.t, store.SetHostEndpoint(ctx, f.pool, h.ID, "unix:///rec/"+name+".sock"))
}

// submit makes n guests of 1 vCPU, 256 MiB and 1 GiB and submits their
// guest.create tasks, 100 to a transaction.
func (f *fleet) submit(n int) []string {
	f.t.Helper()
	ctx := context.Background()
	var ids []string
	for i := 0; i < n; i += 100 {
		tx, err := f.pool.Begin(ctx)
		require.NoError(f.t, err)
		for j := i; j < min(i+100, n); j++ {
			g, err := store.CreateGuest(ctx, tx, rackcloud.Guest{Meta: rackcloud.Meta{Name: fmt.Sprintf("g%04d", j)}, ProjectID: f.project,
				Kind: rackcloud.GuestContainer, Flavor: rackcloud.Resources{CPUCores: 1, MemoryMiB: 256, DiskGiB: 1}, ImageID: f.image})
			require.NoError(f.t, err)
			info, err := f.api.Submit(ctx, tx, tasks.Submission{Kind: rackcloud.KindGuestCreate, Target: "guest/" + g.ID,
				Params: rackcloud.GuestTaskParams{GuestID: g.ID}})
			require.NoError(f.t, err)
			ids = append(ids, info.ID)
		}
		require.NoError(f.t, tx.Commit(ctx))
	}
	return ids
}

// start runs a vmworker and waits for its "ready".
func (f *fleet) start(name string, args ...string) *proc.Process {
	f.t.Helper()
	log := filepath.Join(f.dir, name+".log")
	p, err := proc.Start(proc.Spec{Name: name, Path: f.bin, Args: append([]string{"-db", f.url, "-id", name}, args...), Log: log})
	require.NoError(f.t, err)
	f.t.Cleanup(func() { p.Stop(syscall.SIGTERM, 10*time.Second) })
	f.waitLog(name, "ready", time.Minute)
	return p
}

// waitLog waits until worker name's log holds line.
func (f *fleet) waitLog(name, line string, d time.Duration) {
	f.t.Helper()
	labtest.Eventually(f.t, d, 20*time.Millisecond, name+": "+line, func() (bool, string) {
		b, _ := os.ReadFile(filepath.Join(f.dir, name+".log"))
		return strings.Contains(string(b), line), string(b)
	})
}

// stats reads the "conflicts N placed M" line a stopped worker printed.
func (f *fleet) stats(name string) (conflicts, placed int) {
	f.t.Helper()
	file, err := os.Open(filepath.Join(f.dir, name+".log"))
	require.NoError(f.t, err)
	defer file.Close()
	found := false
	for sc := bufio.NewScanner(file); sc.Scan(); {
		if _, err := fmt.Sscanf(sc.Text(), "conflicts %d placed %d", &conflicts, &placed); err == nil {
			found = true
		}
	}
	require.True(f.t, found, "%s printed no conflicts line", name)
	return conflicts, placed
}

// waitTasks waits until the tasks all ended.
func (f *fleet) waitTasks(ids []string, d time.Duration) {
	f.t.Helper()
	labtest.Eventually(f.t, d, 100*time.Millisecond, "the tasks to end", func() (bool, string) {
		var open int
		require.NoError(f.t, f.pool.QueryRow(context.Background(), `SELECT count(*) FROM tasks
			WHERE id = ANY($1::uuid[]) AND state NOT IN ('succeeded', 'failed', 'canceled')`, ids).Scan(&open))
		return open == 0, fmt.Sprintf("%d open", open)
	})
}

func (f *fleet) count(query string, args ...any) int {
	f.t.Helper()
	var n int
	require.NoError(f.t, f.pool.QueryRow(context.Background(), query, args...).Scan(&n), query)
	return n
}

func (f *fleet) requireConsistent() {
	f.t.Helper()
	over, err := store.OverbookedHosts(context.Background(), f.pool)
	require.NoError(f.t, err)
	require.Empty(f.t, over, "over-booked hosts, or usage rows that do not match the guests")
}

// TestEightReplicasNeverOverbook runs 1,050 guest.create tasks on 8
// replica processes sharing one database, onto 50 hosts that hold exactly
// 1,000: the database's judgement of each claim must keep every host
// within what it sells, place each guest once, and refuse the 50 left.
func TestEightReplicasNeverOverbook(t *testing.T) {
	t.Parallel()
	const replicas, guests, capacity = 8, 1050, 1000
	f := newFleet(t, 3)
	total := 0
	for i := range 50 {
		n := 18 + i%5 // 18..22, 100 per five hosts
		f.host(fmt.Sprintf("d%02d", i), i%3, n)
		total += n
	}
	require.Equal(t, capacity, total)
	var ws []*proc.Process
	for i := range replicas {
		ws = append(ws, f.start(fmt.Sprintf("w%d", i), "-workers", "16"))
	}
	start := time.Now()
	ids := f.submit(guests)
	t.Logf("submitted %d tasks in %v", guests, time.Since(start))
	f.waitTasks(ids, 5*time.Minute)
	t.Logf("%d tasks ended in %v", guests, time.Since(start))

	f.requireConsistent()
	require.Equal(t, capacity, f.count(`SELECT count(*) FROM guests WHERE state = 'running' AND host_id IS NOT NULL`))
	require.Equal(t, guests-capacity, f.count(`SELECT count(*) FROM guests WHERE state = 'failed' AND host_id IS NULL
		AND placement LIKE '%no host fits%'`))
	require.Equal(t, capacity, f.count(`SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND state = 'succeeded'`, ids))
	require.Equal(t, capacity, f.count(`SELECT count(*) FROM vm_calls WHERE op = 'create'`), "one create per placed guest")
	require.Equal(t, capacity, f.count(`SELECT count(*) FROM vm_calls c JOIN guests g ON g.id::text = c.guest_id
		AND g.host_id::text = c.host_id WHERE c.op = 'create'`), "each create on the guest's host")
	require.Zero(t, f.count(`SELECT count(*) FROM vm_calls c JOIN guests g ON g.id::text = c.guest_id WHERE g.host_id IS NULL`),
		"nothing made for a refused guest")

	conflicts, placed := 0, 0
	for i, w := range ws {
		w.Stop(syscall.SIGTERM, 30*time.Second)
		c, p := f.stats(fmt.Sprintf("w%d", i))
		t.Logf("w%d: conflicts %d placed %d", i, c, p)
		conflicts, placed = conflicts+c, placed+p
	}
	// A replica counts a placement when its claim commits. A place step
	// run again (its worker's lease lapsed under load, or its claim
	// committed and the step's record did not) finds the guest placed and
	// counts nothing, so the sum may fall short by the re-runs, never by
	// more and never exceed what the database holds.
	var reruns int
	rows, err := f.pool.Query(context.Background(), `SELECT attempts, errors::text FROM task_steps
		WHERE task_id = ANY($1::uuid[]) AND phase = 'run' AND name = $2 AND attempts > 1`, ids, vmctl.StepPlace)
	require.NoError(t, err)
	for rows.Next() {
		var attempts int
		var errs string
		require.NoError(t, rows.Scan(&attempts, &errs))
		reruns += attempts - 1
		t.Logf("place step run %d times: %s", attempts, errs)
	}
	require.NoError(t, rows.Err())
	require.LessOrEqual(t, placed, capacity)
	require.GreaterOrEqual(t, placed, capacity-reruns, "%d placement(s) counted by no replica, %d re-run(s)", capacity-placed, reruns)
	t.Logf("%d replicas: %d conflicts, %d placed: conflict ratio %.1f%%", replicas, conflicts, placed,
		100*float64(conflicts)/float64(conflicts+placed))
}

// TestKill9MidCreateResumesOnce kills a replica inside the driver's
// create: the next replica resumes the task on the claimed host, creates
// again (the real drivers find what they made by name), and the guest
// ends running there, charged once.
func TestKill9MidCreateResumesOnce(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 1)
	f.host("d0", 0, 4)
	f.host("d1", 0, 4)
	w1 := f.start("w1", "-block", "create")
	ids := f.submit(1)
	f.waitLog("w1", "blocked in create", time.Minute)
	w1.Stop(syscall.SIGKILL, 10*time.Second)
	f.start("w2")
	f.waitTasks(ids, 2*time.Minute)

	info, err := f.api.Get(context.Background(), ids[0])
	require.NoError(t, err)
	require.Equal(t, rackcloud.TaskSucceeded, info.State, info.Error)
	var g rackcloud.Guest
	require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT id::text FROM guests`).Scan(&g.ID))
	g, err = store.GetGuest(context.Background(), f.pool, g.ID)
	require.NoError(t, err)
	require.Equal(t, rackcloud.GuestRunning, g.State)
	require.NotEmpty(t, g.HostID)
	require.Equal(t, 1, f.count(`SELECT count(DISTINCT host_id) FROM vm_calls`), "the claim survived the kill")
	require.Equal(t, g.HostID, func() string {
		var h string
		require.NoError(t, f.pool.QueryRow(context.Background(), `SELECT DISTINCT host_id FROM vm_calls`).Scan(&h))
		return h
	}())
	require.GreaterOrEqual(t, f.count(`SELECT count(*) FROM vm_calls WHERE op = 'prepare'`), 1)
	require.Equal(t, 2, f.count(`SELECT count(*) FROM vm_calls WHERE op = 'create' AND guest_id = $1 AND host_id = $2`, g.ID, g.HostID),
		"the interrupted create and the resumed one")
	require.Equal(t, 2, f.count(`SELECT count(*) FROM vm_calls WHERE op = 'create'`))
	require.Equal(t, 1, f.count(`SELECT count(*) FROM vm_calls WHERE op = 'start'`))
	f.requireConsistent()
}

// TestKill9MidFencedEvacuationResumesOnce kills the replica that is
// recreating a fenced host's guest inside the driver's create: the next
// replica resumes the evacuation, the guest ends running on the other
// host once, its claim moved once (no host over-booked, the fenced host's
// share released), and nothing was made again on the fenced host.
func TestKill9MidFencedEvacuationResumesOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFleet(t, 1)
	f.host("d0", 0, 4)
	f.host("d1", 0, 4)
	g, err := store.CreateGuest(ctx, f.pool, rackcloud.Guest{Meta: rackcloud.Meta{Name: "ha"}, ProjectID: f.project, HA: rackcloud.HARestart,
		Kind: rackcloud.GuestContainer, Flavor: rackcloud.Resources{CPUCores: 1, MemoryMiB: 256, DiskGiB: 1}, ImageID: f.image})
	require.NoError(t, err)
	info, err := f.api.Submit(ctx, f.pool, tasks.Submission{Kind: rackcloud.KindGuestCreate, Target: "guest/" + g.ID,
		Params: rackcloud.GuestTaskParams{GuestID: g.ID}})
	require.NoError(t, err)
	w0 := f.start("w0")
	f.waitTasks([]string{info.ID}, time.Minute)
	w0.Stop(syscall.SIGTERM, 30*time.Second)
	g, err = store.GetGuest(ctx, f.pool, g.ID)
	require.NoError(t, err)
	require.Equal(t, rackcloud.GuestRunning, g.State)
	dead := g.HostID

	// The controller fenced the guest's host: powered off, failed.
	_, err = f.pool.Exec(ctx, `UPDATE hosts SET state = 'failed', failure_reason = 'fenced', failed_in = 'ready', power = 'off'
		WHERE id = $1::uuid`, dead)
	require.NoError(t, err)
	ev, err := f.api.Submit(ctx, f.pool, tasks.Submission{Kind: rackcloud.KindHostEvacuate, Target: "host/" + dead + "/evacuate",
		Params: rackcloud.HostEvacuateParams{HostID: dead, Fenced: true}})
	require.NoError(t, err)
	w1 := f.start("w1", "-block", "create")
	f.waitLog("w1", "blocked in create", time.Minute)
	w1.Stop(syscall.SIGKILL, 10*time.Second)
	f.start("w2")
	f.waitTasks([]string{ev.ID}, 2*time.Minute)

	done, err := f.api.Get(ctx, ev.ID)
	require.NoError(t, err)
	require.Equal(t, rackcloud.TaskSucceeded, done.State, done.Error)
	g, err = store.GetGuest(ctx, f.pool, g.ID)
	require.NoError(t, err)
	require.Equal(t, rackcloud.GuestRunning, g.State)
	require.NotEqual(t, dead, g.HostID, "recreated on the other host")
	require.Equal(t, 1, f.count(`SELECT count(*) FROM guests`), "one guest")
	require.Equal(t, 2, f.count(`SELECT count(*) FROM vm_calls WHERE op = 'create' AND host_id = $1`, g.HostID),
		"the interrupted create and the resumed one, on the new host")
	require.Equal(t, 1, f.count(`SELECT count(*) FROM vm_calls WHERE op = 'start' AND host_id = $1`, g.HostID))
	require.Equal(t, 1, f.count(`SELECT count(*) FROM vm_calls WHERE op = 'create' AND host_id = $1`, dead),
		"nothing made again on the fenced host")
	require.Zero(t, f.count(`SELECT count(*) FROM vm_calls WHERE host_id = $1 AND at > (SELECT created_at FROM tasks WHERE id = $2)`, dead, ev.ID),
		"the fenced host is not asked anything")
	f.requireConsistent()
}
