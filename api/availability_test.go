package api_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/api"
)

// Alertmanager's webhook: a firing HostDown for a host in service starts
// host.fence on it; everything else is ignored with the reason, and the
// answer is 200 so that Alertmanager does not send it again; a malformed
// body is a 422; only staff may call it.
func TestAvailabilityWebhookFencesHostsInService(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.fixture("avail")
	e.setHostState(f.host, rackcloud.HostReady)
	var name string
	require.NoError(t, e.pool.QueryRow(t.Context(), `SELECT name FROM hosts WHERE id = $1::uuid`, f.host).Scan(&name))
	alert := func(status, alertname string, labels map[string]string) map[string]any {
		l := map[string]string{"alertname": alertname}
		for k, v := range labels {
			l[k] = v
		}
		return map[string]any{"status": status, "labels": l, "fingerprint": "abc", "extra": "kept"}
	}
	body := map[string]any{"version": "4", "status": "firing", "receiver": "rackcloud", "truncatedAlerts": 0, "unknownField": true,
		"alerts": []any{
			alert("firing", "HostDown", map[string]string{"host": name}),
			alert("resolved", "HostDown", map[string]string{"host": name}),
			alert("firing", "TaskFailures", map[string]string{"host": name}),
			alert("firing", "HostDown", map[string]string{"host": "no-such-host"}),
			alert("firing", "HostDown", nil),
		}}
	out := e.must(200, "POST", "/v1/availability/webhook", e.admin, body)
	acts := out["actions"].([]any)
	require.Len(t, acts, 5)
	get := func(i int, k string) string { s, _ := acts[i].(map[string]any)[k].(string); return s }
	require.Equal(t, "fence", get(0, "action"), "%v", acts[0])
	require.Equal(t, name, get(0, "host"))
	require.NotEmpty(t, get(0, "task_id"))
	require.Contains(t, get(1, "reason"), "resolved")
	require.Contains(t, get(2, "reason"), "asks for no action")
	require.Contains(t, get(3, "reason"), "no-such-host")
	require.Contains(t, get(4, "reason"), "no host or host_id label")
	task := e.must(200, "GET", "/v1/tasks/"+get(0, "task_id"), e.admin, nil)
	require.Equal(t, rackcloud.KindHostFence, task["kind"])
	require.Equal(t, "host/"+f.host, task["target"])
	e.waitTask(e.admin, get(0, "task_id"))

	// Any alert labelled rackcloud_action="fence" fences, by host_id; a
	// host another task holds is left to that task.
	custom := map[string]any{"alerts": []any{alert("firing", "Custom", map[string]string{"host_id": f.host, "rackcloud_action": "fence"})}}
	_, err := e.pool.Exec(t.Context(), `INSERT INTO tasks (id, root_id, kind, target, state, run_at)
		VALUES (gen_random_uuid(), gen_random_uuid(), $1, 'host/' || $2, 'pending', now() + interval '1 hour')`, rackcloud.KindHostDrain, f.host)
	require.NoError(t, err)
	act := e.must(200, "POST", "/v1/availability/webhook", e.admin, custom)["actions"].([]any)[0].(map[string]any)
	require.Equal(t, "ignored", act["action"])
	require.Contains(t, act["reason"], "active task")
	_, err = e.pool.Exec(t.Context(), `DELETE FROM tasks WHERE target = 'host/' || $1 AND kind = $2`, f.host, rackcloud.KindHostDrain)
	require.NoError(t, err)
	act = e.must(200, "POST", "/v1/availability/webhook", e.admin, custom)["actions"].([]any)[0].(map[string]any)
	require.Equal(t, "fence", act["action"], "%v", act)
	e.waitTask(e.admin, act["task_id"].(string))

	// Not in service: nothing to fence.
	e.setHostState(f.host, rackcloud.HostAvailable)
	out = e.must(200, "POST", "/v1/availability/webhook", e.admin, map[string]any{"alerts": []any{alert("firing", "HostDown", map[string]string{"host": name})}})
	act = out["actions"].([]any)[0].(map[string]any)
	require.Equal(t, "ignored", act["action"])
	require.Contains(t, act["reason"], "cannot fence")

	e.problem(e.do("POST", "/v1/availability/webhook", f.member, body), 403, api.ProblemForbidden)
	e.problem(e.do("POST", "/v1/availability/webhook", e.admin, map[string]any{"alerts": "nope"}), 422, api.ProblemValidation)
	e.problem(e.do("POST", "/v1/availability/webhook", e.admin, map[string]any{"alerts": []any{map[string]any{"status": "sideways", "labels": map[string]string{}}}}),
		422, api.ProblemValidation)

	audit := e.must(200, "GET", "/v1/audit-events?action=fenceHost", e.admin, nil)["items"].([]any)
	outcomes := map[string]int{}
	for _, a := range audit {
		outcomes[a.(map[string]any)["outcome"].(string)]++
	}
	require.Equal(t, 2, outcomes["success"], "%v", audit)
}
