package tasks_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/lab/proc"
	"github.com/rackcloud/rackcloud/tasks"
	"github.com/rackcloud/rackcloud/tasks/internal/killkinds"
)

// buildWorker builds tasks/internal/killworker into dir (with the race
// detector when this test binary has it).
func buildWorker(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "killworker")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./internal/killworker")
	cmd := exec.Command("go", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build killworker: %v\n%s", err, out.String())
	}
	return bin
}

// TestKill9WorkersMidStep runs many tasks (and sub-tasks) on two worker
// processes and SIGKILLs one of them again and again at random points,
// driven by the count of step runs; some workers also SIGKILL themselves
// right after a step's effect, before the step is recorded. Every task
// must still succeed, every step's effect must exist exactly once, and
// nothing may be left leased, waiting or active.
func TestKill9WorkersMidStep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.DB(t)
	url := pgtest.URL(t)
	dir := t.TempDir()
	bin := buildWorker(t, dir)
	_, err := pool.Exec(ctx, killkinds.DDL)
	require.NoError(t, err)

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	// Submit through an engine that runs nothing.
	cfg := testConfig(t)
	cfg.Workers = -1
	api := startEngine(t, pool, cfg, killkinds.Kinds(pool, killkinds.Options{})...)
	const threes, parents = 120, 20
	for range threes {
		submit(t, api, pool, killkinds.Three, "", nil)
	}
	for range parents {
		submit(t, api, pool, killkinds.Parent, "", nil)
	}
	const total = threes + parents + 2*parents
	wantEffects := 3*threes + 2*parents + 3*2*parents

	type worker struct {
		p    *proc.Process
		name string
	}
	var all []*worker
	n := 0
	// start starts a worker; with wait, it waits until the worker is ready.
	start := func(die int64, wait bool) *worker {
		n++
		name := fmt.Sprintf("w%d", n)
		p, err := proc.Start(proc.Spec{Name: name, Path: bin,
			Args: []string{"-db", url, "-id", name, "-die-at-effect", fmt.Sprint(die)},
			Log:  filepath.Join(dir, name+".log")})
		require.NoError(t, err)
		w := &worker{p: p, name: name}
		all = append(all, w)
		t.Cleanup(func() { p.Stop(syscall.SIGTERM, 10*time.Second) })
		if !wait {
			return w
		}
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		err = p.WaitFunc(wctx, func() bool {
			b, _ := os.ReadFile(filepath.Join(dir, name+".log"))
			return bytes.Contains(b, []byte("ready"))
		})
		if err != nil {
			// A self-killing worker may die before we saw it ready.
			if done, _ := p.Exited(); !done || die == 0 {
				t.Fatalf("worker %s not ready: %v\n%s", name, err, p.LogTail(20))
			}
		}
		return w
	}
	counts := func() (runs, ended int) {
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM kill_runs`).Scan(&runs))
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM tasks WHERE state IN ('succeeded', 'failed', 'canceled')`).Scan(&ended))
		return runs, ended
	}
	live := []*worker{start(0, true), start(0, true)}
	// replaceDead restarts workers that killed themselves.
	replaceDead := func() int {
		died := 0
		for i, w := range live {
			if done, _ := w.p.Exited(); done {
				died++
				live[i] = start(0, false)
			}
		}
		return died
	}

	// Kill points: after this many step runs in all (there are at least
	// as many runs as effects, so every point is reached).
	const wantKills = 15
	var points []int
	for range wantKills {
		points = append(points, 5+rng.IntN(wantEffects*3/4))
	}
	slices.Sort(points)
	kills, selfKills := 0, 0
	deadline, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	runs, ended := counts()
	for kills < wantKills && ended < total {
		selfKills += replaceDead()
		if runs >= points[kills] {
			i := rng.IntN(len(live))
			live[i].p.Stop(syscall.SIGKILL, 10*time.Second)
			kills++
			var die int64
			if kills%3 == 0 {
				die = 1 + rng.Int64N(5)
			}
			// Not waiting for it to be ready: the kills go on meanwhile.
			live[i] = start(die, false)
		}
		select {
		case <-deadline.Done():
			t.Fatalf("tasks did not finish: %d of %d ended", ended, total)
		case <-time.After(10 * time.Millisecond):
		}
		runs, ended = counts()
	}
	for ended < total {
		selfKills += replaceDead()
		select {
		case <-deadline.Done():
			t.Fatalf("tasks did not finish after the kills: %d of %d ended", ended, total)
		case <-time.After(20 * time.Millisecond):
		}
		runs, ended = counts()
	}
	t.Logf("%d kill -9 by the test, %d by workers themselves after an effect, %d step runs for %d effects, %d processes",
		kills, selfKills, runs, wantEffects, len(all))
	require.Equal(t, wantKills, kills, "the tasks finished before all kills happened")

	// Every task succeeded; nothing is leased, parked or pending.
	infos, err := api.List(ctx, tasks.ListOptions{Limit: tasks.MaxListLimit})
	require.NoError(t, err)
	require.Len(t, infos, total)
	want := map[string]bool{}
	steps := map[string][]string{killkinds.Three: {"one", "two", "three"}, killkinds.Parent: {"spawn", "gather"}}
	for _, inf := range infos {
		require.Equal(t, rackcloud.TaskSucceeded, inf.State, "%s %s: %s", inf.Kind, inf.ID, inf.Error)
		require.False(t, inf.Waiting)
		require.Zero(t, inf.ChildrenPending)
		for i, s := range steps[inf.Kind] {
			want[fmt.Sprintf("task/%s/run/%d/%s", inf.ID, i, s)] = true
		}
	}
	require.Len(t, want, wantEffects)
	var leased int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM tasks WHERE lease_token IS NOT NULL OR lease_owner IS NOT NULL`).Scan(&leased))
	require.Zero(t, leased)

	// Each step's effect exists exactly once (the key is the primary key),
	// for exactly the expected steps.
	rows, err := pool.Query(ctx, `SELECT key FROM kill_effects`)
	require.NoError(t, err)
	got := map[string]bool{}
	for rows.Next() {
		var k string
		require.NoError(t, rows.Scan(&k))
		got[k] = true
	}
	require.NoError(t, rows.Err())
	require.Equal(t, want, got)
	// One succeeded record per step.
	var records int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM task_steps WHERE phase = 'run' AND state = 'succeeded'`).Scan(&records))
	require.Equal(t, wantEffects, records)

	// The kills landed inside steps: some steps ran again after their
	// effect was applied, and the idempotency key kept it single.
	var rerun int
	require.NoError(t, pool.QueryRow(ctx, `
		SELECT count(*) FROM (SELECT key FROM kill_runs GROUP BY key HAVING count(*) > 1) r`).Scan(&rerun))
	t.Logf("%d steps ran more than once", rerun)
	require.Positive(t, rerun)
	require.Greater(t, runs, wantEffects)

	// Workers shut down cleanly on SIGTERM.
	for _, w := range live {
		w.p.Stop(syscall.SIGTERM, 10*time.Second)
		if done, err := w.p.Exited(); !done || err != nil {
			t.Errorf("worker %s: exited %v, %v\n%s", w.name, done, err, w.p.LogTail(10))
		}
	}
	for _, w := range all {
		b, err := os.ReadFile(filepath.Join(dir, w.name+".log"))
		require.NoError(t, err)
		if strings.Contains(string(b), "DATA RACE") || strings.Contains(string(b), "panic:") {
			t.Errorf("worker %s:\n%s", w.name, b)
		}
	}
}
