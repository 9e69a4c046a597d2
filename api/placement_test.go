package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/api"
	"github.com/rackcloud/rackcloud/lab/labtest"
)

// A dry run answers where a guest would go, or why nowhere, with what
// each filter removed, and claims nothing; bad guest requests are 4xx
// that say where.
func TestPlacementDryRunAndGuestRequestChecks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	tok := e.admin
	p := e.must(201, "POST", "/v1/projects", tok, map[string]any{"name": "dry"})
	e.must(200, "PUT", "/v1/projects/"+p["id"].(string)+"/quota", tok,
		map[string]any{"reserved": map[string]any{"vcpu": 100, "memory_mib": 100000, "disk_gib": 1000, "hosts": 0}})
	sum := "sha256:" + strings.Repeat("a", 64)
	ctr := e.must(201, "POST", "/v1/images", tok, map[string]any{"name": "ctr", "url": "http://127.0.0.1/c.tar", "checksum": sum, "format": "docker-archive"})
	for i, mem := range []int{1024, 4096} {
		h := e.must(201, "POST", "/v1/hosts", tok, map[string]any{"name": fmt.Sprintf("d%d", i), "macs": []string{fmt.Sprintf("52:54:00:dd:00:0%d", i)},
			"resources": map[string]any{"cpu_cores": 4, "memory_mib": mem, "disk_gib": 50}, "labels": map[string]string{"ssd": fmt.Sprint(i == 0)}})
		_, err := e.pool.Exec(ctx, `UPDATE hosts SET role = 'docker', state = 'ready' WHERE id = $1`, h["id"])
		require.NoError(t, err)
	}
	body := func(mem int, constraints ...string) map[string]any {
		return map[string]any{"project_id": p["id"], "name": "web", "kind": "container", "image_id": ctr["id"],
			"flavor": map[string]any{"vcpu": 1, "memory_mib": mem, "disk_gib": 1}, "constraints": constraints}
	}
	// The snapshot catches up with the hosts by notification.
	var a map[string]any
	labtest.Eventually(t, 10*time.Second, 20*time.Millisecond, "a dry run to see both hosts", func() (bool, string) {
		a = e.must(200, "POST", "/v1/placement/dry-run", tok, body(2048))
		return a["fits"] == true && a["considered"] == float64(2), fmt.Sprint(a)
	})
	require.Equal(t, "d1", a["host_name"], "only d1 has 2048 MiB")

	a = e.must(200, "POST", "/v1/placement/dry-run", tok, body(2048, "ssd=true"))
	require.Equal(t, false, a["fits"])
	require.Contains(t, a["summary"], "1 lacked 2048 MiB memory after overhead (best had 1024)", "the closest miss")
	n, err := e.pool.Exec(ctx, `SELECT 1 FROM guests`)
	require.NoError(t, err)
	require.Zero(t, n.RowsAffected(), "a dry run claims nothing")

	r := e.do("POST", "/v1/placement/dry-run", tok, body(256, "tier in (a"))
	e.problem(r, 422, api.ProblemValidation)
	require.Contains(t, r.String(), "body.constraints[0]")
	// A bm guest's image is written on a bm host's disk: a container
	// image, or a raw one not made for bm hosts, is refused.
	bm := body(256)
	bm["kind"] = "bm"
	r = e.do("POST", "/v1/guests", tok, bm)
	e.problem(r, 422, api.ProblemValidation)
	require.Contains(t, r.String(), "a bm guest needs [raw raw+zstd]")
	kvmImg := e.must(201, "POST", "/v1/images", tok, map[string]any{"name": "kvm-host", "url": "http://127.0.0.1/k.img.zst", "checksum": sum,
		"format": "raw+zstd", "size": 1 << 30, "roles": []string{"kvm"}})
	bm["image_id"] = kvmImg["id"]
	r = e.do("POST", "/v1/guests", tok, bm)
	e.problem(r, 422, api.ProblemValidation)
	require.Contains(t, r.String(), "a bm guest needs an image for role bm")
	vm := body(256)
	vm["kind"] = "vm"
	r = e.do("POST", "/v1/guests", tok, vm)
	e.problem(r, 422, api.ProblemValidation)
	require.Contains(t, r.String(), "docker-archive", "a container image cannot run as a VM")

	// Adoption: role and endpoint together, a sane endpoint, no
	// credentials on a unix socket.
	r = e.do("POST", "/v1/hosts", tok, map[string]any{"role": "docker"})
	e.problem(r, 422, api.ProblemValidation)
	r = e.do("POST", "/v1/hosts", tok, map[string]any{"role": "docker", "endpoint": "qemu+tls://10.0.0.1:16514/system"})
	e.problem(r, 422, api.ProblemValidation)
	require.Contains(t, r.String(), "dockerd answers on unix:// or tcp://")
	r = e.do("POST", "/v1/hosts", tok, map[string]any{"role": "docker", "endpoint": "unix:///run/docker.sock",
		"credentials": map[string]any{"server_name": "x"}})
	e.problem(r, 422, api.ProblemValidation)
	r = e.do("POST", "/v1/hosts", tok, map[string]any{"role": "kvm", "endpoint": "qemu+tls://10.0.0.1:16514/system",
		"credentials": map[string]any{"cert_pem": "nope", "key_pem": "nope"}})
	e.problem(r, 422, api.ProblemValidation)
	require.Contains(t, r.String(), "body.credentials")
	// This test server runs no vmctl worker: the adoption is refused
	// whole, and no half-adopted host is left behind.
	r = e.do("POST", "/v1/hosts", tok, map[string]any{"name": "adoptee", "role": "docker", "endpoint": "unix:///run/nowhere.sock"})
	e.problem(r, 501, api.ProblemNotImplemented)
	var left int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM hosts WHERE name = 'adoptee'`).Scan(&left))
	require.Zero(t, left)
}
