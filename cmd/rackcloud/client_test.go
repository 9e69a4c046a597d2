package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/api"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// run runs a subcommand in-process and returns what it printed.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	stdout, stderr = &out, &errb
	defer func() { stdout, stderr = os.Stdout, os.Stderr }()
	c, ok := commands[args[0]]
	require.True(t, ok, "command %s", args[0])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := c.run(ctx, args[1:])
	return out.String(), errb.String(), err
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := run(t, args...)
	require.NoError(t, err, "rackcloud %s\n%s%s", strings.Join(args, " "), out, errOut)
	return out
}

// The client verbs against a real server on a real database, with a task
// engine whose guest.create kind moves the guest to running in two steps
// (vmctl registers the real one).
func TestClientVerbsEndToEnd(t *testing.T) {
	dbURL := pgtest.URL(t)
	pool := pgtest.DB(t)
	engine, err := tasks.New(pool, tasks.Config{Workers: 2, PollInterval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	step := func(state rackcloud.GuestState) tasks.StepFunc {
		return func(ctx context.Context, sc *tasks.StepContext) (any, error) {
			var p struct {
				GuestID string `json:"guest_id"`
			}
			if err := sc.Params(&p); err != nil {
				return nil, err
			}
			g, err := store.GetGuest(ctx, pool, p.GuestID)
			if err != nil {
				return nil, err
			}
			g.State = state
			_, err = store.UpdateGuest(ctx, pool, g)
			return nil, err
		}
	}
	require.NoError(t, engine.Register(tasks.Kind{Name: api.KindGuestCreate, Steps: []tasks.Step{
		{Name: "place", Run: step(rackcloud.GuestCreating)}, {Name: "start", Run: step(rackcloud.GuestRunning)}}}))
	require.NoError(t, engine.Register(tasks.Kind{Name: api.KindHostEnroll, Steps: []tasks.Step{
		{Name: "set-boot-pxe", Run: func(context.Context, *tasks.StepContext) (any, error) { return nil, nil }},
		{Name: "power-on", Run: func(context.Context, *tasks.StepContext) (any, error) { return nil, nil }}}}))
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, engine.Start(ctx))
	sealer, err := store.NewSealer(bytes.Repeat([]byte{1}, 32))
	require.NoError(t, err)
	srv := httptest.NewServer(api.New(api.Deps{Pool: pool, Tasks: engine, Sealer: sealer, Logger: slog.New(slog.DiscardHandler)}).Handler())
	t.Cleanup(func() {
		srv.Close()
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = engine.Stop(sctx)
		cancel()
	})

	// The first admin token comes straight from the database, once.
	admin := strings.TrimSpace(mustRun(t, "token", "bootstrap", "--database-url", dbURL))
	require.True(t, strings.HasPrefix(admin, "rct_"), admin)
	_, _, err = run(t, "token", "bootstrap", "--database-url", dbURL)
	require.ErrorContains(t, err, "--force")

	// Server and token from a config file...
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("server: "+srv.URL+"\ntoken: "+admin+"\n"), 0o600))
	mustRun(t, "region", "create", "lab", "--config", cfg)
	// ... or from the environment ...
	t.Setenv("RACKCLOUD_SERVER", srv.URL)
	t.Setenv("RACKCLOUD_TOKEN", admin)
	mustRun(t, "zone", "create", "z1", "--region", "lab")
	// Zone overcommit: set on create, changed by update, checked by the server.
	out := mustRun(t, "zone", "create", "dense", "--region", "lab", "--overcommit", "cpu=4,memory=1.5", "-o", "json")
	require.Contains(t, out, `"cpu": 4`, out)
	require.Contains(t, out, `"memory": 1.5`, out)
	out = mustRun(t, "zone", "update", "dense", "--overcommit", "disk=2", "-o", "json")
	require.Contains(t, out, `"disk": 2`, out)
	require.NotContains(t, out, `"cpu"`, "the ratios not named become 0")
	_, _, err = run(t, "zone", "update", "dense", "--overcommit", "cpu=0.5")
	require.ErrorContains(t, err, "from 1 to 64")
	_, _, err = run(t, "zone", "update", "dense", "--overcommit", "gpu=2")
	require.ErrorContains(t, err, "want cpu=, memory= or disk=")
	mustRun(t, "rack", "create", "r1", "--zone", "z1")
	for _, mac := range []string{"52:54:00:aa:01:01", "52:54:00:aa:01:02"} {
		mustRun(t, "host", "register", "--mac", mac, "--rack", "r1", "--label", "ssd=true")
	}
	// An IPMI BMC cannot tell the host's MACs: enrolling it without one is
	// refused, saying what to do.
	out, progress, err := run(t, "host", "register", "--name", "ipmi-only", "--bmc", "127.0.0.1:9629", "--bmc-user", "admin", "--bmc-password", "hunter2", "--enroll")
	require.ErrorContains(t, err, "register its boot NIC's MAC first", out+progress)
	// Register by (Redfish) BMC and enroll in one go, following the task.
	out, progress, err = run(t, "host", "register", "--bmc", "127.0.0.1:9623", "--bmc-protocol", "redfish", "--bmc-user", "admin", "--bmc-password", "hunter2", "--enroll", "--wait")
	require.NoError(t, err, progress)
	require.Contains(t, out, "host.enroll")
	require.Contains(t, progress, "✓ step 2 power-on")
	require.NotContains(t, out+progress, "hunter2")
	out = mustRun(t, "host", "list", "--label", "ssd=true")
	require.Contains(t, out, "host-525400aa0101")
	require.Contains(t, out, "discovered")
	require.Equal(t, 3, strings.Count(out, "\n"), out) // header and two hosts (the BMC-only ones have no label)
	out = mustRun(t, "host", "list", "--mac", "52-54-00-AA-01-02")
	require.Contains(t, out, "host-525400aa0102")
	require.Equal(t, 2, strings.Count(out, "\n"), out)
	// The boot timeline of a host, as the boot service reported it.
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	evs := fmt.Sprintf(`[{"time":%q,"mac":"52:54:00:aa:01:01","kind":"dhcp.ack","client":"bios","ip":"10.77.0.20","file":"undionly.kpxe"},
		{"time":%q,"mac":"52:54:00:aa:01:01","kind":"tftp.done","file":"undionly.kpxe","bytes":70000},
		{"time":%q,"mac":"52:54:00:aa:09:09","kind":"dhcp.discover"}]`,
		t0.Format(time.RFC3339Nano), t0.Add(2310*time.Millisecond).Format(time.RFC3339Nano), t0.Format(time.RFC3339Nano))
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/boot/events", strings.NewReader(evs))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusAccepted, res.StatusCode)
	out = mustRun(t, "host", "boot-events", "host-525400aa0101")
	require.Equal(t, 3, strings.Count(out, "\n"), out) // header and two events
	require.Regexp(t, `03:04:05.000\s+\+0.00s\s+52:54:00:aa:01:01\s+dhcp.ack\s+bios\s+10.77.0.20`, out)
	require.Regexp(t, `03:04:07.310\s+\+2.31s\s+52:54:00:aa:01:01\s+tftp.done.*70000 bytes`, out)
	out = mustRun(t, "host", "boot-events", "host-525400aa0101", "--last", "1")
	require.Equal(t, 2, strings.Count(out, "\n"), out)
	require.Regexp(t, `03:04:07.310\s+\+0.00s\s+52:54:00:aa:01:01\s+tftp.done`, out)
	out = mustRun(t, "host", "boot-events", "--mac", "52-54-00-aa-09-09")
	require.Contains(t, out, "dhcp.discover")
	_, _, err = run(t, "host", "boot-events")
	require.ErrorContains(t, err, "usage")
	// The timeline joins the boot events with the tasks' steps.
	out = mustRun(t, "host", "timeline", "host-525400aa0101")
	require.Regexp(t, `03:04:05.000\s+\+0.00s\s+boot\s+dhcp.ack \(bios\)\s+10.77.0.20 undionly.kpxe`, out)
	require.Regexp(t, `\+2.31s\s+boot\s+tftp.done`, out)
	out = mustRun(t, "host", "timeline", "bmc-127-0-0-1-9623")
	require.Regexp(t, `task\s+host.enroll submitted`, out)
	require.Regexp(t, `task\s+host.enroll: power-on succeeded`, out)
	require.Regexp(t, `task\s+host.enroll succeeded`, out)
	require.Less(t, strings.Index(out, "submitted"), strings.Index(out, "host.enroll succeeded"), "in time order")

	// A host found by its MAC gets its BMC and a fixed address afterwards.
	t.Setenv("RACKCLOUD_BMC_PASSWORD", "pw-from-env")
	out = mustRun(t, "host", "set-bmc", "host-525400aa0102", "--bmc", "127.0.0.1:9624", "--bmc-user", "admin")
	require.Contains(t, out, `"address": "127.0.0.1:9624"`)
	require.NotContains(t, out, "pw-from-env")
	out = mustRun(t, "host", "update", "host-525400aa0102", "--ipv4", "10.77.0.42", "--label", "row=3")
	require.Contains(t, out, `"provisioning_ipv4": "10.77.0.42"`)
	require.Contains(t, out, `"row": "3"`)
	out = mustRun(t, "host", "update", "host-525400aa0102", "--ipv4", "")
	require.NotContains(t, out, "provisioning_ipv4")
	_, _, err = run(t, "host", "update", "host-525400aa0102")
	require.ErrorContains(t, err, "at least one")
	_, _, err = run(t, "host", "update", "host-525400aa0102", "--ipv4", "300.1.1.1")
	require.ErrorContains(t, err, "422")

	var hosts []map[string]any
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, "host", "list", "-o", "json", "--limit", "1")), &hosts))
	require.Len(t, hosts, 1)
	mustRun(t, "image", "create", "debian", "--url", "http://127.0.0.1/d.img.zst", "--checksum", "sha256:"+strings.Repeat("ab", 32), "--format", "raw+zstd", "--size", "2147483648", "--role", "kvm")
	mustRun(t, "project", "create", "web")
	mustRun(t, "project", "quota", "web", "--vcpu", "4", "--memory", "4096", "--disk", "40")
	member := strings.TrimSpace(mustRun(t, "token", "create", "dev", "--role", "member", "--project", "web"))

	// ... and flags win. A member creates a guest and waits, seeing the steps.
	out, progress, err = run(t, "guest", "create", "app-1", "--project", "web", "--image", "debian", "--vcpu", "2", "--wait", "--token", member)
	require.NoError(t, err, progress)
	require.Contains(t, out, "guest.create")
	require.Contains(t, progress, "✓ step 1 place")
	require.Contains(t, progress, "✓ step 2 start")
	require.Contains(t, progress, "succeeded")
	out = mustRun(t, "guest", "list", "--token", member)
	require.Contains(t, out, "app-1")
	require.Contains(t, out, "running")
	out = mustRun(t, "task", "list", "--token", member)
	require.Contains(t, out, "succeeded")

	// Errors are the server's problem documents, said plainly.
	_, _, err = run(t, "guest", "create", "app-2", "--project", "web", "--image", "debian", "--vcpu", "3", "--token", member)
	var p *problem
	require.True(t, errors.As(err, &p), "%v", err)
	require.Equal(t, api.ProblemQuota, p.Type)
	require.Contains(t, err.Error(), "vcpu")
	_, _, err = run(t, "host", "list", "--token", member)
	require.ErrorContains(t, err, "403")
	t.Setenv("RACKCLOUD_TOKEN", "")
	_, _, err = run(t, "region", "list", "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	require.ErrorContains(t, err, "--token")
	_, _, err = run(t, "region", "list", "--server", "ftp://x")
	require.ErrorContains(t, err, "http(s)")

	// The audit log shows who did what.
	out = mustRun(t, "audit", "list", "--action", "createGuest", "--token", admin)
	require.Contains(t, out, "user:admin")
	require.Contains(t, out, "success")
	require.Contains(t, out, "failure")
}
