package main

import (
	"context"
	"fmt"

	"github.com/rackcloud/rackcloud/agent"
)

func init() {
	register(command{name: "agent", summary: "inspection agent: report this machine's hardware inventory, or print it as JSON", run: runAgent})
}

// runAgent is agent.Main, as in the boot images' rackcloud-agent.
func runAgent(ctx context.Context, args []string) error {
	if code := agent.Main(ctx, "rackcloud agent", args, stdout, stderr); code != 0 {
		return fmt.Errorf("exit status %d", code)
	}
	return nil
}
