// Command provworker is a rackcloud replica for the provisioner's kill -9
// test: a task engine running the provisioner's kinds against a database,
// with a BMC that records each call as a row of prov_bmc_calls (made by
// the test) (and, for
// the call named by -block, blocks until killed) and role checks that
// always answer. It prints "ready" once the engine started.
package main

import (
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/provisioner"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

type roles struct{}

func (roles) Check(_ context.Context, _ rackcloud.Host, _ rackcloud.HostRole, addr string) (string, string, error) {
	return provisioner.DockerEndpoint(addr), "OK", nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "provworker:", err)
		os.Exit(1)
	}
}

func run() error {
	db := flag.String("db", "", "database URL")
	id := flag.String("id", "", "worker ID")
	key := flag.String("key", "", "hex secret key (the replicas share it)")
	block := flag.String("block", "", "BMC operation that blocks until the process is killed (pxe, disk)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	pool, err := store.NewPool(ctx, *db)
	if err != nil {
		return err
	}
	defer pool.Close()
	k, err := hex.DecodeString(*key)
	if err != nil {
		return err
	}
	sealer, err := store.NewSealer(k)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	call := func(op string) func(context.Context, string) error {
		return func(ctx context.Context, hostID string) error {
			if _, err := pool.Exec(ctx, `INSERT INTO prov_bmc_calls (worker, op, host_id) VALUES ($1, $2, $3)`, *id, op, hostID); err != nil {
				return err
			}
			if op == *block {
				fmt.Println("blocked in", op)
				<-make(chan struct{}) // until SIGKILL
			}
			return nil
		}
	}
	bmcs := provisioner.BMCFuncs{PXEBootFunc: call("pxe"), DiskBootFunc: call("disk"), PowerOffFunc: call("off"),
		MACsFunc: func(context.Context, string) ([]string, error) { return nil, nil }}
	e, err := tasks.New(pool, tasks.Config{ID: *id, Workers: 4, LeaseTTL: 2 * time.Second, PollInterval: 100 * time.Millisecond,
		RetryBase: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond, Logger: log})
	if err != nil {
		return err
	}
	p := provisioner.New(provisioner.Config{Pool: pool, BMC: bmcs, Sealer: sealer, BootURL: "http://10.88.0.1:8080",
		Roles: roles{}, Recheck: 200 * time.Millisecond, Logger: log})
	if err := p.Register(e); err != nil {
		return err
	}
	if err := e.Start(ctx); err != nil {
		return err
	}
	fmt.Println("ready")
	<-ctx.Done()
	return e.Stop(context.Background())
}
