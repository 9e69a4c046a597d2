package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/rackcloud/rackcloud/agent"
)

func init() {
	register(command{name: "agent", summary: "inspection agent: print this machine's hardware inventory as JSON", run: runAgent})
}

func runAgent(ctx context.Context, args []string) error {
	fs := newFlagSet("rackcloud agent", "", "Reports this machine's hardware inventory as JSON.")
	root := fs.String("root", "/", "root of the file system to inspect (where proc and sys are)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	inv, err := agent.Collect(os.DirFS(*root))
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(inv, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Println(string(b))
	return err
}
