// Command killworker runs a task engine with the kill -9 test's kinds
// (package killkinds) until SIGTERM or SIGKILL. It prints "ready" once the
// engine started.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
	"github.com/rackcloud/rackcloud/tasks/internal/killkinds"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "killworker:", err)
		os.Exit(1)
	}
}

func run() error {
	db := flag.String("db", "", "database URL")
	id := flag.String("id", "", "worker ID")
	workers := flag.Int("workers", 4, "tasks run at once")
	lease := flag.Duration("lease", 2*time.Second, "lease TTL")
	poll := flag.Duration("poll", 100*time.Millisecond, "poll interval")
	die := flag.Int64("die-at-effect", 0, "SIGKILL self right after this many effects (0: never)")
	sleep := flag.Duration("max-sleep", 15*time.Millisecond, "longest pause around each effect")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	pool, err := store.NewPool(ctx, *db)
	if err != nil {
		return err
	}
	defer pool.Close()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e, err := tasks.New(pool, tasks.Config{
		ID: *id, Workers: *workers, LeaseTTL: *lease, PollInterval: *poll,
		RetryBase: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond, Logger: log,
	})
	if err != nil {
		return err
	}
	for _, k := range killkinds.Kinds(pool, killkinds.Options{DieAtEffect: *die, MaxSleep: *sleep}) {
		if err := e.Register(k); err != nil {
			return err
		}
	}
	if err := e.Start(ctx); err != nil {
		return err
	}
	fmt.Println("ready")
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return e.Stop(sctx)
}
