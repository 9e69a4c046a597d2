package api_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/api"
	"github.com/rackcloud/rackcloud/store"
)

// The enums the API documents are the domain's lists, so that a reason or
// a state added at the root cannot be missing from the API.
func TestEnumsFollowTheDomain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	schemas := e.openAPI().Components.Schemas
	enum := func(schema, prop string) []string {
		s := schemas[schema]
		require.NotNil(t, s, schema)
		p := s.Properties[prop]
		require.NotNil(t, p, schema+"."+prop)
		var out []string
		for _, v := range p.Enum {
			out = append(out, v.(string))
		}
		return out
	}
	var reasons, states []string
	for _, r := range rackcloud.FailureReasons() {
		reasons = append(reasons, string(r))
	}
	for _, s := range rackcloud.HostStates() {
		states = append(states, string(s))
	}
	require.ElementsMatch(t, reasons, enum("HostFailure", "reason"))
	require.ElementsMatch(t, states, enum("Host", "state"))
	var kinds []string
	for _, k := range rackcloud.BootEventKinds() {
		kinds = append(kinds, string(k))
	}
	require.Equal(t, kinds, enum("BootEventIn", "kind"), "the boot event kinds, in order")
	var roles []string
	for _, r := range rackcloud.HostRoles() {
		roles = append(roles, string(r))
	}
	require.ElementsMatch(t, roles, enum("EnrollSet", "role"))
	require.ElementsMatch(t, rackcloud.Firmwares(), enum("EnrollMatch", "firmware"))
}

// retry resumes a failed host with the kind of the state it failed in;
// the lifecycle refuses what a state does not allow, saying what it does.
func TestRetryAndReset(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.fixture("retry")
	r := e.do("POST", "/v1/hosts/"+f.host+"/retry", e.admin, nil)
	e.problem(r, 409, api.ProblemConflict)
	require.Contains(t, r.json(t)["detail"], "a host that is discovered cannot retry (it can: inspect, adopt)")

	ctx := context.Background()
	_, err := store.TransitionHost(ctx, e.pool, f.host, store.Transition{From: rackcloud.HostDiscovered, To: rackcloud.HostInspecting})
	require.NoError(t, err)
	_, err = store.TransitionHost(ctx, e.pool, f.host, store.Transition{From: rackcloud.HostInspecting, To: rackcloud.HostFailed,
		Failure: &rackcloud.HostFailure{Reason: rackcloud.FailAgentTimeout, Step: "await-inventory"}})
	require.NoError(t, err)
	h := e.must(200, "GET", "/v1/hosts/"+f.host, e.admin, nil)
	require.Equal(t, map[string]any{"reason": "agent_timeout", "step": "await-inventory", "in": "inspecting"}, h["failure"])
	task := e.must(202, "POST", "/v1/hosts/"+f.host+"/retry", e.admin, nil)
	require.Equal(t, api.KindHostEnroll, task["kind"])
	e.waitTask(e.admin, task["id"].(string))

	r = e.do("POST", "/v1/hosts/"+f.host+"/reset", e.admin, nil)
	e.problem(r, 501, api.ProblemNotImplemented) // host.deprovision has no worker yet
}
