package main

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/api"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/store"
)

// rule create/list/get/delete and host match against a real server.
func TestRuleVerbsAndHostMatch(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.DB(t)
	srv := httptest.NewServer(api.New(api.Deps{Pool: pool, Logger: slog.New(slog.DiscardHandler)}).Handler())
	t.Cleanup(srv.Close)
	_, admin, err := store.Bootstrap(ctx, pool, store.BootstrapOptions{})
	require.NoError(t, err)
	t.Setenv("RACKCLOUD_SERVER", srv.URL)
	t.Setenv("RACKCLOUD_TOKEN", admin)
	t.Setenv("RACKCLOUD_CONFIG", "")

	mustRun(t, "region", "create", "lab")
	mustRun(t, "zone", "create", "z1", "--region", "lab")
	mustRun(t, "rack", "create", "r1", "--zone", "z1")
	mustRun(t, "image", "create", "debian", "--url", "http://127.0.0.1/d.img", "--checksum", "sha256:abababababababababababababababababababababababababababababababab", "--format", "raw", "--size", "1048576", "--role", "kvm")
	mustRun(t, "host", "register", "--mac", "52:54:00:aa:01:01", "--rack", "r1")

	out := mustRun(t, "rule", "create", "big-kvm", "--priority", "20", "--vendor", "QEMU*", "--min-memory-mib", "4096",
		"--rack", "r1", "--role", "kvm", "--image", "debian", "--label", "pool=kvm", "--provision")
	require.Contains(t, out, `"provision": true`)
	require.Contains(t, out, `"pool": "kvm"`)
	mustRun(t, "rule", "create", "small", "--priority", "10", "--mac-prefix", "52:54:00:bb")
	_, _, err = run(t, "rule", "create", "dup", "--priority", "10")
	require.ErrorContains(t, err, "409")
	_, _, err = run(t, "rule", "create", "glob", "--priority", "11", "--vendor", "Dell[")
	require.ErrorContains(t, err, "body.match.vendor")
	_, _, err = run(t, "rule", "create", "nopriority")
	require.ErrorContains(t, err, "--priority")

	out = mustRun(t, "rule", "list")
	require.Regexp(t, `(?s)PRIORITY\s+NAME.*\n10\s+small.*\n20\s+big-kvm\s+min_memory_mib=4096,rack_id=\S+,vendor=QEMU\*\s+kvm`, out)
	require.Contains(t, mustRun(t, "rule", "get", "small"), `"mac_prefix": "52:54:00:bb"`)

	h, err := store.GetHostByMAC(ctx, pool, "52:54:00:aa:01:01")
	require.NoError(t, err)
	out = mustRun(t, "host", "match", h.Name)
	require.Contains(t, out, "enrolled by: no rule recorded\nmatches now: no rule\n")
	require.Regexp(t, `small\s+false\s+mac 52:54:00:aa:01:01 does not start with 52:54:00:bb`, out)
	require.Regexp(t, `big-kvm\s+false\s+no inventory yet`, out)
	_, err = store.SetHostInventory(ctx, pool, h.ID, rackcloud.Inventory{Vendor: "QEMU", CPUs: 2, MemoryMiB: 8192}, rackcloud.Resources{}, rackcloud.Resources{})
	require.NoError(t, err)
	out = mustRun(t, "host", "match", h.Name)
	require.Regexp(t, `matches now: big-kvm \(\S+\)`, out)
	require.Regexp(t, `big-kvm\s+true\s+matches`, out)

	require.Contains(t, mustRun(t, "rule", "delete", "small"), "deleted rule")
	require.NotContains(t, mustRun(t, "rule", "list"), "small")
}
