package api_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/api"
)

func TestEvacuateHostChecksTheHostAndAudits(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.fixture("evac")
	path := "/v1/hosts/" + f.host + "/evacuate"
	e.setHostState(f.host, rackcloud.HostReady)

	r := e.do("POST", path, e.admin, map[string]any{})
	e.problem(r, 409, api.ProblemConflict)
	require.Contains(t, r.String(), "put it in maintenance first")
	r = e.do("POST", path, e.admin, map[string]any{"fenced": true})
	e.problem(r, 409, api.ProblemConflict)
	require.Contains(t, r.String(), "not fenced")
	e.problem(e.do("POST", path, f.member, map[string]any{}), 403, api.ProblemForbidden)
	e.problem(e.do("POST", "/v1/hosts/00000000-0000-4000-8000-000000000000/evacuate", e.admin, nil), 404, api.ProblemNotFound)

	// Live, from maintenance; no body means live.
	e.setHostState(f.host, rackcloud.HostMaintenance)
	task := e.must(202, "POST", path, e.admin, nil)
	require.Equal(t, rackcloud.KindHostEvacuate, task["kind"])
	require.Equal(t, "host/"+f.host+"/evacuate", task["target"], "a drain holding the host does not block it")
	e.waitTask(e.admin, task["id"].(string))
	require.JSONEq(t, `{"host_id": "`+f.host+`"}`, e.params(task["id"].(string)))

	// Fenced: the BMC confirmed power off, and no new guest lands on it.
	e.setHostState(f.host, rackcloud.HostReady)
	_, err := e.pool.Exec(t.Context(), `UPDATE hosts SET power = 'off' WHERE id = $1::uuid`, f.host)
	require.NoError(t, err)
	r = e.do("POST", path, e.admin, map[string]any{"fenced": true})
	e.problem(r, 409, api.ProblemConflict)
	require.Contains(t, r.String(), "would take new guests")
	e.setHostState(f.host, rackcloud.HostDraining)
	task = e.must(202, "POST", path, e.admin, map[string]any{"fenced": true})
	e.waitTask(e.admin, task["id"].(string))
	require.JSONEq(t, `{"host_id": "`+f.host+`", "fenced": true}`, e.params(task["id"].(string)))

	audit := e.must(200, "GET", "/v1/audit-events?action=evacuateHost", e.admin, nil)["items"].([]any)
	outcomes := map[string]int{}
	for _, a := range audit {
		outcomes[a.(map[string]any)["outcome"].(string)]++
	}
	require.Equal(t, 2, outcomes["success"], "%v", audit)
	require.GreaterOrEqual(t, outcomes["failure"], 3, "%v", audit)
}

// params are a task's parameters as the engine keeps them.
func (e *env) params(id string) string {
	e.t.Helper()
	info, err := e.engine.Get(e.t.Context(), id)
	require.NoError(e.t, err)
	return string(info.Params)
}
