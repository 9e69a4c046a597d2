package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/postgres"
	"github.com/rackcloud/rackcloud/lab/proc"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
	"github.com/rackcloud/rackcloud/vmctl"
)

// committedConfig sizes the committed section.
type committedConfig struct {
	guests, hosts, workers int
	// replicas are the end-to-end runs' replica counts (the BENCH line
	// reports 1 and 8; 0 reports a run not made).
	replicas []int
	// statements prints, after each end-to-end run, the statements that
	// took the database's time (pg_stat_statements).
	statements int
}

// flavor is every committed guest's: each host sells perHost of them.
var flavor = rackcloud.Resources{CPUCores: 1, MemoryMiB: 256, DiskGiB: 1}

const perHost = 20

// run is one committed measurement.
type run struct {
	perSec            float64
	conflicts, placed int64
}

func (r run) ratio() float64 {
	if r.conflicts+r.placed == 0 {
		return 0
	}
	return float64(r.conflicts) / float64(r.conflicts+r.placed)
}

// committed measures committed placements per second on a throwaway
// PostgreSQL: end to end (guest.create tasks on 1 and 8 vmworker replica
// processes with the recording driver, from submit to the last task
// succeeded), and the raw claim (a decision on a Keeper and one
// store.ClaimHost transaction, retried with Exclude on a lost race;
// goroutines in this process sharing one Keeper, and split over 8). It
// prints a line per run to w and returns the fields for the BENCH line.
func committed(w io.Writer, c committedConfig) (string, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "rackcloud-bench-placement-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil { // postgres runs as its own user
		return "", err
	}
	bin := filepath.Join(dir, "vmworker")
	if out, err := exec.Command("go", "build", "-o", bin, "./vmctl/internal/vmworker").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build vmworker: %v\n%s", err, out)
	}
	pg, err := postgres.Start(ctx, postgres.Config{Dir: filepath.Join(dir, "pg")})
	if err != nil {
		return "", err
	}
	if c.statements > 0 {
		if pg, err = withStatements(ctx, pg); err != nil {
			return "", err
		}
	}
	defer pg.Stop()

	e2e := map[int]run{}
	for _, n := range c.replicas {
		r, err := endToEnd(ctx, pg, dir, bin, n, c)
		if err != nil {
			return "", fmt.Errorf("%d replicas: %w", n, err)
		}
		fmt.Fprintf(w, "committed end to end: replicas=%d workers=%d guests=%d hosts=%d: %.0f committed/s (%.0f per replica), %d conflicts (%.1f%%)\n",
			n, c.workers, c.guests, c.hosts, r.perSec, r.perSec/float64(n), r.conflicts, 100*r.ratio())
		e2e[n] = r
	}
	for _, n := range []int{1, 8} {
		r, err := rawClaims(ctx, pg, n, c)
		if err != nil {
			return "", fmt.Errorf("raw claims, %d keepers: %w", n, err)
		}
		fmt.Fprintf(w, "raw claims (decide + ClaimHost, in-process): keepers=%d goroutines=%d: %.0f claims/s, %d conflicts (%.1f%%)\n",
			n, n*c.workers, r.perSec, r.conflicts, 100*r.ratio())
	}
	return fmt.Sprintf("committed_1_per_s=%.0f committed_8_per_s=%.0f conflicts_8=%.1f%%",
		e2e[1].perSec, e2e[8].perSec, 100*e2e[8].ratio()), nil
}

// fixture is a fresh database with hosts that sell perHost guests each
// and guests waiting to be placed.
type fixture struct {
	pool   *pgxpool.Pool
	url    string
	guests []rackcloud.Guest
}

var databases atomic.Int64

func newFixture(ctx context.Context, pg *postgres.Cluster, c committedConfig) (*fixture, error) {
	name := fmt.Sprintf("committed_%d", databases.Add(1))
	if err := pg.CreateDatabase(ctx, name); err != nil {
		return nil, err
	}
	f := &fixture{url: pg.URL(name)}
	pool, err := store.NewPool(ctx, f.url+"&pool_max_conns=64")
	if err != nil {
		return nil, err
	}
	f.pool = pool
	if err := f.seed(ctx, c); err != nil {
		pool.Close()
		return nil, err
	}
	return f, nil
}

func (f *fixture) seed(ctx context.Context, c committedConfig) error {
	if _, err := store.Migrate(ctx, f.pool); err != nil {
		return err
	}
	if _, err := f.pool.Exec(ctx, `CREATE TABLE vm_calls (id bigserial PRIMARY KEY, worker text, op text, host_id text,
		guest_id text, at timestamptz DEFAULT clock_timestamp())`); err != nil {
		return err
	}
	p, err := store.CreateProject(ctx, f.pool, rackcloud.Project{Meta: rackcloud.Meta{Name: "bench"}})
	if err != nil {
		return err
	}
	if _, err := store.SetQuota(ctx, f.pool, p.ID, 0, rackcloud.Resources{CPUCores: 1 << 30, MemoryMiB: 1 << 50, DiskGiB: 1 << 40}, 0); err != nil {
		return err
	}
	im, err := store.CreateImage(ctx, f.pool, rackcloud.Image{Meta: rackcloud.Meta{Name: "img"}, URL: "http://127.0.0.1:1/img",
		Checksum: "sha256:" + strings.Repeat("0", 64), Format: rackcloud.FormatDockerArchive})
	if err != nil {
		return err
	}
	reg, err := store.CreateRegion(ctx, f.pool, rackcloud.Region{Meta: rackcloud.Meta{Name: "reg"}})
	if err != nil {
		return err
	}
	z, err := store.CreateZone(ctx, f.pool, rackcloud.Zone{Meta: rackcloud.Meta{Name: "z"}, RegionID: reg.ID})
	if err != nil {
		return err
	}
	var rack rackcloud.Rack
	for i := range c.hosts {
		if i%20 == 0 {
			if rack, err = store.CreateRack(ctx, f.pool, rackcloud.Rack{Meta: rackcloud.Meta{Name: fmt.Sprintf("r%02d", i/20)},
				ZoneID: z.ID, Positions: 42}); err != nil {
				return err
			}
		}
		name := fmt.Sprintf("d%04d", i)
		h, err := store.CreateHost(ctx, f.pool, rackcloud.Host{Meta: rackcloud.Meta{Name: name}, RackID: rack.ID,
			Role: rackcloud.RoleDocker, State: rackcloud.HostReady,
			Resources: rackcloud.Resources{CPUCores: perHost * flavor.CPUCores, MemoryMiB: perHost * flavor.MemoryMiB, DiskGiB: perHost * flavor.DiskGiB}})
		if err != nil {
			return err
		}
		if err := store.SetHostEndpoint(ctx, f.pool, h.ID, "unix:///rec/"+name+".sock"); err != nil {
			return err
		}
	}
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	for i := range c.guests {
		g, err := store.CreateGuest(ctx, tx, rackcloud.Guest{Meta: rackcloud.Meta{Name: fmt.Sprintf("g%05d", i)}, ProjectID: p.ID,
			Kind: rackcloud.GuestContainer, Flavor: flavor, ImageID: im.ID})
		if err != nil {
			return err
		}
		f.guests = append(f.guests, g)
	}
	return tx.Commit(ctx)
}

// endToEnd starts n vmworker replicas and times c.guests guest.create
// tasks from the first submit until all succeeded.
func endToEnd(ctx context.Context, pg *postgres.Cluster, dir, bin string, n int, c committedConfig) (run, error) {
	f, err := newFixture(ctx, pg, c)
	if err != nil {
		return run{}, err
	}
	defer f.pool.Close()
	api, err := tasks.New(f.pool, tasks.Config{Workers: -1, Registerer: prometheus.NewRegistry()})
	if err != nil {
		return run{}, err
	}
	if err := vmctl.New(vmctl.Config{Pool: f.pool, Reconcile: -1, Registerer: prometheus.NewRegistry()}).Register(api); err != nil {
		return run{}, err
	}
	var logs []string
	var ws []*proc.Process
	defer func() {
		for _, p := range ws {
			p.Stop(syscall.SIGKILL, 5*time.Second)
		}
	}()
	for i := range n {
		id := fmt.Sprintf("r%d-w%d", n, i)
		log := filepath.Join(dir, id+".log")
		p, err := proc.Start(proc.Spec{Name: id, Path: bin, Log: log, Args: []string{"-db", f.url + fmt.Sprintf("&pool_max_conns=%d", c.workers+4),
			"-id", id, "-workers", fmt.Sprint(c.workers)}})
		if err != nil {
			return run{}, err
		}
		ws, logs = append(ws, p), append(logs, log)
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		err = p.WaitFunc(wctx, func() bool { b, _ := os.ReadFile(log); return strings.Contains(string(b), "ready") })
		cancel()
		if err != nil {
			return run{}, fmt.Errorf("%s: %w\n%s", id, err, p.LogTail(20))
		}
	}

	if c.statements > 0 {
		if _, err := f.pool.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()`); err != nil {
			return run{}, err
		}
	}
	start := time.Now()
	var ids []string
	for i := 0; i < len(f.guests); i += 500 {
		tx, err := f.pool.Begin(ctx)
		if err != nil {
			return run{}, err
		}
		for _, g := range f.guests[i:min(i+500, len(f.guests))] {
			info, err := api.Submit(ctx, tx, tasks.Submission{Kind: rackcloud.KindGuestCreate, Target: "guest/" + g.ID,
				Params: rackcloud.GuestTaskParams{GuestID: g.ID}})
			if err != nil {
				tx.Rollback(ctx)
				return run{}, err
			}
			ids = append(ids, info.ID)
		}
		if err := tx.Commit(ctx); err != nil {
			return run{}, err
		}
	}
	// The poll counts the active root tasks through the engine's
	// partial index of active tasks (the database holds this run's
	// only), so that it costs the database little while it measures:
	// counting the 2,000 IDs every 20 ms took a seventh of its time.
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var open int
		if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM tasks WHERE target IS NOT NULL
			AND state IN ('pending', 'running', 'canceling') AND parent_id IS NULL`).Scan(&open); err != nil {
			return run{}, err
		}
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			return run{}, fmt.Errorf("%d of %d tasks still open after 10 minutes", open, len(ids))
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := run{perSec: float64(len(ids)) / time.Since(start).Seconds()}
	var failed int
	if err := f.pool.QueryRow(ctx, `SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND state <> 'succeeded'`, ids).Scan(&failed); err != nil {
		return run{}, err
	}
	if failed > 0 {
		return run{}, fmt.Errorf("%d guest.create tasks failed", failed)
	}
	if c.statements > 0 {
		if err := printStatements(ctx, os.Stdout, f.pool, c.statements, len(ids)); err != nil {
			return run{}, err
		}
	}
	if over, err := store.OverbookedHosts(ctx, f.pool); err != nil || len(over) > 0 {
		return run{}, fmt.Errorf("over-booked hosts %v: %v", over, err)
	}
	for i, p := range ws {
		p.Stop(syscall.SIGTERM, 30*time.Second)
		conflicts, placed, err := workerStats(logs[i])
		if err != nil {
			return run{}, err
		}
		r.conflicts, r.placed = r.conflicts+conflicts, r.placed+placed
	}
	if r.placed != int64(len(ids)) {
		return run{}, fmt.Errorf("the replicas placed %d guests, not %d", r.placed, len(ids))
	}
	return r, nil
}

// workerStats reads the "conflicts N placed M" line a stopped vmworker
// printed.
func workerStats(log string) (conflicts, placed int64, err error) {
	file, err := os.Open(log)
	if err != nil {
		return 0, 0, err
	}
	defer file.Close()
	for sc := bufio.NewScanner(file); sc.Scan(); {
		if _, err := fmt.Sscanf(sc.Text(), "conflicts %d placed %d", &conflicts, &placed); err == nil {
			return conflicts, placed, nil
		}
	}
	return 0, 0, fmt.Errorf("%s: no conflicts line", log)
}

// rawClaims places c.guests with n Keepers in this process, c.workers
// goroutines on each, each placement a decision and one ClaimHost
// transaction: the claim path without the task engine.
func rawClaims(ctx context.Context, pg *postgres.Cluster, n int, c committedConfig) (run, error) {
	f, err := newFixture(ctx, pg, c)
	if err != nil {
		return run{}, err
	}
	defer f.pool.Close()
	kctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // the keepers stop before the pool closes
	keepers := make([]*vmctl.Keeper, n)
	for i := range keepers {
		keepers[i] = vmctl.NewKeeper(f.pool, 0, slog.New(slog.DiscardHandler))
		wg.Add(1)
		go func() { defer wg.Done(); _ = keepers[i].Run(kctx) }()
		<-keepers[i].Ready()
	}
	queue := make(chan rackcloud.Guest, len(f.guests))
	for _, g := range f.guests {
		queue <- g
	}
	close(queue)
	var conflicts, placed atomic.Int64
	errs := make(chan error, n*c.workers)
	start := time.Now()
	var claimers sync.WaitGroup
	for _, k := range keepers {
		for range c.workers {
			claimers.Add(1)
			go func() {
				defer claimers.Done()
				for g := range queue {
					lost, err := claim(ctx, f.pool, k, g)
					for errors.Is(err, errLostRaces) { // the task would retry: so does the bench
						conflicts.Add(int64(lost))
						lost, err = claim(ctx, f.pool, k, g)
					}
					conflicts.Add(int64(lost))
					if err != nil {
						errs <- err
						return
					}
					placed.Add(1)
				}
			}()
		}
	}
	claimers.Wait()
	r := run{perSec: float64(placed.Load()) / time.Since(start).Seconds(), conflicts: conflicts.Load(), placed: placed.Load()}
	close(errs)
	if err := <-errs; err != nil {
		return run{}, err
	}
	if over, err := store.OverbookedHosts(ctx, f.pool); err != nil || len(over) > 0 {
		return run{}, fmt.Errorf("over-booked hosts %v: %v", over, err)
	}
	return r, nil
}

// claim decides on k and claims in the database, excluding each host it
// lost a race for (as vmctl's place step does), and reports how many it
// lost.
func claim(ctx context.Context, pool *pgxpool.Pool, k *vmctl.Keeper, g rackcloud.Guest) (lost int, err error) {
	r := vmctl.Request{GuestID: g.ID, Kind: g.Kind, Flavor: g.Flavor, Exclude: map[string]bool{}}
	for range vmctl.DefaultClaimTries {
		d, res, err := k.Reserve(r, g)
		if err != nil {
			return lost, err
		}
		_, err = store.ClaimHost(ctx, pool, g.ID, d.HostID, d.Explain())
		res.End(err == nil)
		if err == nil {
			return lost, nil
		}
		if !errors.Is(err, rackcloud.ErrConflict) {
			return lost, err
		}
		lost++
		r.Exclude[d.HostID] = true
		if err := k.Refresh(ctx, d.HostID); err != nil {
			return lost, err
		}
	}
	return lost, errLostRaces
}

// errLostRaces is a placement that lost DefaultClaimTries claims in a row.
var errLostRaces = errors.New("lost every claim to other keepers")

// withStatements restarts pg with pg_stat_statements loaded (the data
// directory is kept).
func withStatements(ctx context.Context, pg *postgres.Cluster) (*postgres.Cluster, error) {
	pool, err := store.NewPool(ctx, pg.URL("postgres"))
	if err != nil {
		return nil, err
	}
	_, err = pool.Exec(ctx, `ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`)
	pool.Close()
	if err != nil {
		return nil, err
	}
	pg.Stop()
	return postgres.Start(ctx, pg.Config)
}

// printStatements prints the n statements of the run that took the most
// database time, per guest.create of the run's tasks.
func printStatements(ctx context.Context, w io.Writer, pool *pgxpool.Pool, n, tasks int) error {
	rows, err := pool.Query(ctx, `SELECT calls, total_exec_time, sum(total_exec_time) OVER (), regexp_replace(left(query, 90), '\s+', ' ', 'g')
		FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		ORDER BY total_exec_time DESC LIMIT $1`, n)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var calls int64
		var ms, all float64
		var q string
		if err := rows.Scan(&calls, &ms, &all, &q); err != nil {
			return err
		}
		fmt.Fprintf(w, "  %5.1f%% of %.0f ms  %6.2f calls/task  %6.3f ms/call  %s\n", 100*ms/all, all, float64(calls)/float64(tasks), ms/float64(calls), q)
	}
	return rows.Err()
}
