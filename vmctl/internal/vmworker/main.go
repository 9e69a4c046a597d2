// Command vmworker is a rackcloud replica for vmctl's multi-replica and
// kill -9 tests: a task engine running vmctl's kinds against a database,
// with a driver that records each call as a row of vm_calls (made by the
// test) and, for the operation named by -block, blocks until killed. With
// -real, the kinds run vmctl's real drivers instead. It prints "ready"
// once the engine started and, when stopped, "conflicts N placed M".
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
	"github.com/rackcloud/rackcloud/vmctl"
)

// recorder is a driver that only records.
type recorder struct {
	pool  *pgxpool.Pool
	id    string
	block string
}

func (r *recorder) rec(ctx context.Context, op string, t vmctl.Target, s vmctl.Spec) error {
	if _, err := r.pool.Exec(ctx, `INSERT INTO vm_calls (worker, op, host_id, guest_id) VALUES ($1, $2, $3, $4)`,
		r.id, op, t.HostID, s.GuestID); err != nil {
		return err
	}
	if op == r.block {
		fmt.Println("blocked in", op)
		<-make(chan struct{}) // until SIGKILL
	}
	return nil
}

func (r *recorder) Prepare(ctx context.Context, t vmctl.Target, s vmctl.Spec) error {
	return r.rec(ctx, "prepare", t, s)
}
func (r *recorder) Create(ctx context.Context, t vmctl.Target, s vmctl.Spec) (string, error) {
	return "rec-" + s.GuestID, r.rec(ctx, "create", t, s)
}
func (r *recorder) Start(ctx context.Context, t vmctl.Target, s vmctl.Spec) error {
	return r.rec(ctx, "start", t, s)
}
func (r *recorder) Stop(ctx context.Context, t vmctl.Target, s vmctl.Spec, _ time.Duration) error {
	return r.rec(ctx, "stop", t, s)
}
func (r *recorder) Reboot(ctx context.Context, t vmctl.Target, s vmctl.Spec) error {
	return r.rec(ctx, "reboot", t, s)
}
func (r *recorder) Delete(ctx context.Context, t vmctl.Target, s vmctl.Spec) error {
	return r.rec(ctx, "delete", t, s)
}
func (r *recorder) Observe(context.Context, vmctl.Target, vmctl.Spec) (vmctl.Observed, error) {
	return vmctl.Observed{State: vmctl.ObservedRunning}, nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "vmworker:", err)
		os.Exit(1)
	}
}

func run() error {
	db := flag.String("db", "", "database URL")
	id := flag.String("id", "", "worker ID")
	workers := flag.Int("workers", 16, "tasks run at once")
	block := flag.String("block", "", "driver operation that blocks until the process is killed")
	real := flag.Bool("real", false, "run the real drivers (libvirt, Docker)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	pool, err := store.NewPool(ctx, *db)
	if err != nil {
		return err
	}
	defer pool.Close()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	e, err := tasks.New(pool, tasks.Config{ID: *id, Workers: *workers, LeaseTTL: 2 * time.Second, PollInterval: 100 * time.Millisecond,
		RetryBase: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	drivers := vmctl.DefaultDrivers()
	if !*real {
		r := &recorder{pool: pool, id: *id, block: *block}
		drivers = map[rackcloud.GuestKind]vmctl.Driver{rackcloud.GuestVM: r, rackcloud.GuestContainer: r}
	}
	vm := vmctl.New(vmctl.Config{Pool: pool, Drivers: drivers, Reconcile: -1, StopGrace: time.Second, Logger: log, Registerer: reg})
	if err := vm.Register(e); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = vm.Run(ctx) }()
	select {
	case <-vm.Keeper().Ready():
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := e.Start(ctx); err != nil {
		return err
	}
	fmt.Println("ready")
	<-ctx.Done()
	err = e.Stop(context.Background())
	<-done
	fmt.Printf("conflicts %d placed %d\n", int64(counter(reg, "rackcloud_placement_conflicts_total", "")),
		int64(counter(reg, "rackcloud_placement_decisions_total", "placed")))
	return err
}

// counter reads a counter (with label result=label when label is set).
func counter(g prometheus.Gatherer, name, label string) float64 {
	mfs, _ := g.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" || hasLabel(m, label) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, v string) bool {
	for _, l := range m.GetLabel() {
		if strings.EqualFold(l.GetValue(), v) {
			return true
		}
	}
	return false
}
