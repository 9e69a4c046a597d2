// Command rackcloud-agent is the inspection agent of the boot images: the
// same command line as `rackcloud agent` (package agent's Main) in a small
// static binary that imports only the agent and the standard library.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/rackcloud/rackcloud/agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := agent.Main(ctx, "rackcloud-agent", os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
