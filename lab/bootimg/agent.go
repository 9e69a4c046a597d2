package bootimg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// The inspection agent in the image.
const (
	// AgentPath is the agent binary (cmd/rackcloud-agent) in the image.
	AgentPath = "bin/rackcloud-agent"
	// InventoryHook runs the agent after the callback: it reports the
	// inventory to the boot service (rackcloud-agent --from-cmdline).
	InventoryHook = HooksDir + "/50-inventory"
	// InventoryMarker is printed on the console by InventoryHook once the
	// boot service took the inventory, followed by " mac=<mac>".
	InventoryMarker = "RACKCLOUD-INVENTORY-OK"
)

// StandbyFor is how long the inspection agent stands by after its report,
// for a plan to install from the same boot (fast track).
const StandbyFor = "15m"

// EnvAgent names a prebuilt agent binary to put into the inspection image
// instead of building one (a machine without the source tree or Go).
const EnvAgent = "RACKCLOUD_AGENT_BINARY"

// modulePath is the module whose cmd/rackcloud-agent is built.
const modulePath = "github.com/rackcloud/rackcloud"

// inventoryHook is InventoryHook's script.
const inventoryHook = `#!/bin/sh
mac=$(sed -n 's/.*` + ParamMAC + `=\([^ ]*\).*/\1/p' /proc/cmdline | tr A-F a-f)
/` + AgentPath + ` --from-cmdline --standby ` + StandbyFor + ` --reported-marker "` + InventoryMarker + ` mac=$mac" ||
	echo "rackcloud-init: inventory not reported, or standby failed"
`

var agentBuild struct {
	mu  sync.Mutex
	bin []byte
}

// Agent builds the static agent binary (CGO_ENABLED=0 go build -trimpath
// -ldflags="-s -w" ./cmd/rackcloud-agent, in this source tree's module
// root) once per process and returns it; $RACKCLOUD_AGENT_BINARY (EnvAgent)
// names a prebuilt one instead. Builds are reproducible, so the
// Go build cache makes a build in a new process cheap and the binary's
// bytes (hashed into the initramfs cache key) change only with its source.
func Agent(ctx context.Context) ([]byte, error) {
	agentBuild.mu.Lock()
	defer agentBuild.mu.Unlock()
	if agentBuild.bin != nil {
		return agentBuild.bin, nil
	}
	if p := os.Getenv(EnvAgent); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("agent ($%s): %w", EnvAgent, err)
		}
		agentBuild.bin = b
		return b, nil
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return nil, fmt.Errorf("build the agent: %w", err)
	}
	out, err := os.MkdirTemp("", "rackcloud-agent-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	bin := filepath.Join(out, "rackcloud-agent")
	cmd := exec.CommandContext(ctx, goTool(), "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/rackcloud-agent")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if os.Getenv("GOCACHE") == "" && os.Getenv("HOME") == "" && os.Getenv("XDG_CACHE_HOME") == "" {
		cmd.Env = append(cmd.Env, "GOCACHE="+filepath.Join(CacheDir(), "gocache"))
	}
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build the agent in %s: %w: %s", root, err, bytes.TrimSpace(msg))
	}
	b, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	agentBuild.bin = b
	return b, nil
}

// AgentFiles are the agent and InventoryHook, to add to a Spec.
func AgentFiles(ctx context.Context) ([]File, error) {
	bin, err := Agent(ctx)
	if err != nil {
		return nil, err
	}
	return []File{
		{Path: AgentPath, Mode: 0o755, Data: bin},
		{Path: InventoryHook, Mode: 0o755, Data: []byte(inventoryHook)},
	}, nil
}

// goTool is the go command: on PATH, else the toolchain's usual home.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); runtime.GOROOT() != "" && fileExists(p) {
		return p
	}
	return "/usr/local/go/bin/go"
}

// moduleRoot finds the rackcloud module's source: the tree this file was
// compiled from (tests, go run, a binary built without -trimpath), else
// the module the go command sees from the working directory.
func moduleRoot(ctx context.Context) (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		dir := filepath.Dir(filepath.Dir(filepath.Dir(file))) // lab/bootimg/agent.go
		if isModule(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
	}
	out, err := exec.CommandContext(ctx, goTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	if gomod := strings.TrimSpace(string(out)); isModule(gomod) {
		return filepath.Dir(gomod), nil
	}
	return "", errors.New("no " + modulePath + " source tree here: run from the rackcloud checkout")
}

func isModule(gomod string) bool {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(first) == "module "+modulePath
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
