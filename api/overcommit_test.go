package api_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/api"
)

// Zones take overcommit ratios on create and PATCH, checked (each 0, or
// from 1 to 64), and the zone's hosts that inherit them sell accordingly.
func TestZoneOvercommit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.fixture("oc")
	capVCPU := func() int {
		var n int
		require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT cap_vcpu FROM host_usage WHERE host_id = $1::uuid`, f.host).Scan(&n))
		return n
	}
	_, err := e.pool.Exec(context.Background(), `UPDATE hosts SET cpu_cores = 4, memory_mib = 8192, disk_gib = 100 WHERE id = $1::uuid`, f.host)
	require.NoError(t, err)
	require.Equal(t, 4, capVCPU())

	for name, body := range map[string]map[string]any{
		"below one":  {"cpu": 0.5},
		"above max":  {"memory": 65},
		"negative":   {"disk": -1},
		"not number": {"cpu": "lots"},
	} {
		t.Run(name, func(t *testing.T) {
			e := e.with(t)
			r := e.do("POST", "/v1/zones", e.admin, map[string]any{"name": "bad", "region_id": f.region, "overcommit": body})
			e.problem(r, 422, api.ProblemValidation)
			require.Contains(t, r.String(), "overcommit", r.String())
			r = e.do("PATCH", "/v1/zones/"+f.zone, e.admin, map[string]any{"overcommit": body})
			e.problem(r, 422, api.ProblemValidation)
		})
	}
	r := e.do("PATCH", "/v1/zones/"+f.zone, e.admin, map[string]any{"overcommit": map[string]any{"cpu": 0.5}})
	require.Contains(t, r.String(), "from 1 to 64", "the message says what is allowed")
	require.Contains(t, r.String(), "overcommit cpu is 0.5")

	z := e.must(201, "POST", "/v1/zones", e.admin, map[string]any{"name": "dense", "region_id": f.region,
		"overcommit": map[string]any{"cpu": 4, "memory": 1.5}})
	require.Equal(t, map[string]any{"cpu": 4.0, "memory": 1.5}, z["overcommit"])
	z = e.must(200, "GET", "/v1/zones/"+z["id"].(string), e.admin, nil)
	require.Equal(t, map[string]any{"cpu": 4.0, "memory": 1.5}, z["overcommit"])

	// The fixture's host is in f.zone and inherits its ratios.
	z = e.must(200, "PATCH", "/v1/zones/"+f.zone, e.admin, map[string]any{"overcommit": map[string]any{"cpu": 2}})
	require.Equal(t, map[string]any{"cpu": 2.0}, z["overcommit"])
	require.Equal(t, 8, capVCPU())
	z = e.must(200, "PATCH", "/v1/zones/"+f.zone, e.admin, map[string]any{"labels": map[string]string{"tier": "gold"}})
	require.Equal(t, map[string]any{"cpu": 2.0}, z["overcommit"], "labels alone keep the ratios")
	require.Equal(t, map[string]any{"tier": "gold"}, z["labels"])
	// The host's own ratio wins (and may be below 1).
	e.must(200, "PATCH", "/v1/hosts/"+f.host, e.admin, map[string]any{"overcommit": map[string]any{"cpu": 0.5}})
	require.Equal(t, 2, capVCPU())
	e.problem(e.do("PATCH", "/v1/hosts/"+f.host, e.admin, map[string]any{"overcommit": map[string]any{"cpu": 0.05}}), 422, api.ProblemValidation)
	e.must(200, "PATCH", "/v1/zones/"+f.zone, e.admin, map[string]any{"overcommit": map[string]any{}})
	e.must(200, "PATCH", "/v1/hosts/"+f.host, e.admin, map[string]any{"overcommit": map[string]any{}})
	require.Equal(t, 4, capVCPU(), "no ratios: 1")
}
