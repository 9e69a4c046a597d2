// Command rackcloud-agent is the agent of the boot images and of installed
// hosts: the same command line as `rackcloud agent` (package agent's Main),
// and the installed host's `host-setup` and `host` subcommands (HostMain),
// in a small static binary that imports only the agent and the standard
// library.
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
	var code int
	if len(os.Args) > 1 && (os.Args[1] == "host" || os.Args[1] == "host-setup") {
		code = agent.HostMain(ctx, "rackcloud-agent", os.Args[1:], os.Stdout, os.Stderr)
	} else {
		code = agent.Main(ctx, "rackcloud-agent", os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()
	os.Exit(code)
}
