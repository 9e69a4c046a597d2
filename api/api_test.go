package api_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/api"
)

const checksum = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// fixture is a small fleet: a region, zone, rack, two hosts, an image and
// a project with a quota and a member.
type fixture struct {
	region, zone, rack, host, image, project string
	member, memberTokenID                    string
	guest                                    string
}

func (e *env) fixture(name string) fixture {
	e.t.Helper()
	var f fixture
	f.region = e.must(201, "POST", "/v1/regions", e.admin, map[string]any{"name": name})["id"].(string)
	f.zone = e.must(201, "POST", "/v1/zones", e.admin, map[string]any{"name": "z1", "region_id": f.region})["id"].(string)
	f.rack = e.must(201, "POST", "/v1/racks", e.admin, map[string]any{"name": "r1", "zone_id": f.zone, "labels": map[string]string{"row": "a"}})["id"].(string)
	f.host = e.must(201, "POST", "/v1/hosts", e.admin, map[string]any{"name": name + "-h1", "macs": []string{macFor(name, 1)},
		"rack_id": f.rack, "bmc": map[string]any{"address": fmt.Sprintf("127.0.0.1:%d", 9000+int(nameHash(name))), "protocol": "ipmi", "username": "admin", "password": "hunter2"}})["id"].(string)
	f.image = e.must(201, "POST", "/v1/images", e.admin, map[string]any{"name": name + "-img", "url": "http://127.0.0.1/x.qcow2",
		"checksum": checksum, "format": "raw", "size": 1 << 30, "roles": []string{"kvm"}})["id"].(string)
	f.project = e.must(201, "POST", "/v1/projects", e.admin, map[string]any{"name": name})["id"].(string)
	e.must(200, "PUT", "/v1/projects/"+f.project+"/quota", e.admin, map[string]any{"reserved": map[string]any{"vcpu": 8, "memory_mib": 8192, "disk_gib": 100, "hosts": 0}})
	f.member, f.memberTokenID = e.token(name+"-member", rackcloud.RoleMember, f.project)
	return f
}

func nameHash(name string) byte {
	var h byte
	for _, c := range name {
		h = h*31 + byte(c)
	}
	return h
}

func macFor(name string, i int) string {
	return fmt.Sprintf("52:54:00:%02x:00:%02x", nameHash(name), i)
}

func TestGuestLifecycleEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.fixture("alpha")

	// A member asks for a guest: 202, Location to the task, the task in the body.
	r := e.do("POST", "/v1/guests", f.member, map[string]any{"project_id": f.project, "name": "web-1", "kind": "vm",
		"flavor": map[string]any{"vcpu": 2, "memory_mib": 2048, "disk_gib": 20}, "image_id": f.image, "zone_id": f.zone,
		"labels": map[string]string{"app": "web"}}, "X-Request-ID", "req-guest-1")
	require.Equal(t, 202, r.Code, r)
	task := r.json(t)
	require.Equal(t, "/v1/tasks/"+task["id"].(string), r.Header.Get("Location"))
	require.Equal(t, api.KindGuestCreate, task["kind"])
	require.Equal(t, "pending", task["state"])
	require.Equal(t, "req-guest-1", r.Header.Get("X-Request-ID"))
	guestID := strings.TrimPrefix(task["target"].(string), "guest/")

	// The quota is charged at once.
	q := e.must(200, "GET", "/v1/projects/"+f.project+"/quota", f.member, nil)
	require.EqualValues(t, 2, q["used"].(map[string]any)["vcpu"])

	// The task's events stream until it ends; the guest is running.
	types := e.waitTask(f.member, task["id"].(string))
	require.Equal(t, "created", types[0])
	require.Equal(t, "succeeded", types[len(types)-1])
	got := e.must(200, "GET", "/v1/tasks/"+task["id"].(string), f.member, nil)
	require.Equal(t, "succeeded", got["state"])
	steps := got["steps"].([]any)
	require.Len(t, steps, 2)
	require.Equal(t, "place", steps[0].(map[string]any)["name"])
	g := e.must(200, "GET", "/v1/guests/"+guestID, f.member, nil)
	require.Equal(t, "running", g["state"])

	// The audit log has the change with who, what, target, outcome and request ID.
	ev := e.must(200, "GET", "/v1/audit-events?action=createGuest", f.member, nil)["items"].([]any)
	require.Len(t, ev, 1)
	a := ev[0].(map[string]any)
	require.Equal(t, "user:alpha-member", a["actor"])
	require.Equal(t, "guest/"+guestID, a["target"])
	require.Equal(t, "success", a["outcome"])
	require.Equal(t, "req-guest-1", a["request_id"])
	require.Equal(t, f.project, a["project_id"])

	// Updates need the current ETag when If-Match is sent.
	r = e.do("GET", "/v1/guests/"+guestID, f.member, nil)
	tag := r.Header.Get("ETag")
	require.NotEmpty(t, tag)
	e.must(200, "PATCH", "/v1/guests/"+guestID, f.member, map[string]any{"ha": "restart"}, "If-Match", tag)
	e.problem(e.do("PATCH", "/v1/guests/"+guestID, f.member, map[string]any{"ha": "none"}, "If-Match", tag), 412, api.ProblemPrecondition)
	e.problem(e.do("DELETE", "/v1/guests/"+guestID, f.member, nil, "If-Match", tag), 412, api.ProblemPrecondition)

	// Delete is a task too; the quota is given back when the guest is gone.
	r = e.do("DELETE", "/v1/guests/"+guestID, f.member, nil)
	require.Equal(t, 202, r.Code, r)
	del := r.json(t)
	require.Equal(t, "succeeded", e.waitTask(f.member, del["id"].(string))[len(e.waitTask(f.member, del["id"].(string)))-1])
	e.problem(e.do("GET", "/v1/guests/"+guestID, f.member, nil), 404, api.ProblemNotFound)
	q = e.must(200, "GET", "/v1/projects/"+f.project+"/quota", f.member, nil)
	require.EqualValues(t, 0, q["used"].(map[string]any)["vcpu"])
}

func TestQuotaRefusesAndChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.fixture("beta")
	guest := func(name string, vcpu int) map[string]any {
		return map[string]any{"project_id": f.project, "name": name, "kind": "vm",
			"flavor": map[string]any{"vcpu": vcpu, "memory_mib": 1024, "disk_gib": 10}, "image_id": f.image}
	}
	r := e.do("POST", "/v1/guests", f.member, guest("a", 6))
	require.Equal(t, 202, r.Code, r)
	e.waitTask(f.member, r.json(t)["id"].(string)) // quiet before the snapshot
	before := e.snapshot()
	r = e.do("POST", "/v1/guests", f.member, guest("b", 3))
	e.problem(r, 403, api.ProblemQuota)
	require.Contains(t, r.json(t)["detail"], "vcpu")
	require.Equal(t, before, e.snapshot())
	// Reserving less than is used is refused as well.
	e.problem(e.do("PUT", "/v1/projects/"+f.project+"/quota", e.admin, map[string]any{"reserved": map[string]any{"vcpu": 2, "memory_mib": 8192, "disk_gib": 100, "hosts": 0}}), 403, api.ProblemQuota)
	require.Equal(t, before, e.snapshot())
	// The refusal is in the audit log.
	ev := e.must(200, "GET", "/v1/audit-events?outcome=failure&action=createGuest", e.admin, nil)["items"].([]any)
	require.Len(t, ev, 1)
}

func TestPaginationFilteringAndLinks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.fixture("gamma")
	for i := range 25 {
		labels := map[string]string{"batch": "x"}
		if i%5 == 0 {
			labels["gpu"] = "true"
		}
		e.must(201, "POST", "/v1/hosts", e.admin, map[string]any{"name": fmt.Sprintf("node-%02d", i), "macs": []string{macFor("p", i)}, "rack_id": f.rack, "labels": labels})
	}
	var names []string
	path := "/v1/hosts?limit=10&label_selector=" + url.QueryEscape("batch=x")
	pages := 0
	for path != "" {
		r := e.do("GET", path, e.admin, nil)
		require.Equal(t, 200, r.Code, r)
		pages++
		for _, it := range r.json(t)["items"].([]any) {
			names = append(names, it.(map[string]any)["name"].(string))
		}
		path = ""
		if l := r.Header.Get("Link"); l != "" {
			require.True(t, strings.HasSuffix(l, `>; rel="next"`), l)
			path = strings.TrimSuffix(strings.TrimPrefix(l, "<"), `>; rel="next"`)
			require.Contains(t, path, "label_selector=batch%3Dx")
		}
	}
	require.Equal(t, 3, pages)
	require.Len(t, names, 25)
	require.Equal(t, "node-00", names[0])
	require.Equal(t, "node-24", names[24])

	gpu := e.must(200, "GET", "/v1/hosts?label_selector=gpu%3Dtrue", e.admin, nil)["items"].([]any)
	require.Len(t, gpu, 5)
	disc := e.must(200, "GET", "/v1/hosts?state=discovered&rack_id="+f.rack+"&limit=1000", e.admin, nil)["items"].([]any)
	require.Len(t, disc, 26)
	none := e.must(200, "GET", "/v1/hosts?state=ready", e.admin, nil)["items"].([]any)
	require.Empty(t, none)
	byMAC := e.must(200, "GET", "/v1/hosts?mac="+url.QueryEscape(strings.ToUpper(macFor("p", 7))), e.admin, nil)["items"].([]any)
	require.Len(t, byMAC, 1)
	require.Equal(t, "node-07", byMAC[0].(map[string]any)["name"])
	e.problem(e.do("GET", "/v1/hosts?mac=nonsense", e.admin, nil), 422, api.ProblemValidation)

	// A host never shows its BMC password; it is sealed at rest.
	h := e.must(200, "GET", "/v1/hosts/"+f.host, e.admin, nil)
	require.NotContains(t, fmt.Sprint(h), "hunter2")
	var sealed []byte
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT bmc_password_sealed FROM hosts WHERE id = $1`, f.host).Scan(&sealed))
	require.NotContains(t, string(sealed), "hunter2")

	// A host discovered by its MAC gets its BMC linked later; a password
	// rotation replaces it. The password stays sealed and unseen.
	disco := e.must(201, "POST", "/v1/hosts", e.admin, map[string]any{"macs": []string{"52:54:00:bb:00:01"}})
	did := disco["id"].(string)
	require.Nil(t, disco["bmc"])
	tag := `"` + fmt.Sprint(disco["version"]) + `"`
	hb := e.must(200, "PUT", "/v1/hosts/"+did+"/bmc", e.admin,
		map[string]any{"address": "10.0.0.17", "protocol": "redfish", "username": "root", "password": "s3cret-1"}, "If-Match", tag)
	require.Equal(t, map[string]any{"address": "10.0.0.17:443", "protocol": "redfish", "username": "root", "healthy": false}, hb["bmc"])
	require.NotContains(t, fmt.Sprint(hb), "s3cret")
	open := func() string {
		var sealed string
		require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT bmc_password_sealed FROM hosts WHERE id = $1`, did).Scan(&sealed))
		pw, err := e.sealer.Open(sealed, []byte(did))
		require.NoError(t, err)
		return pw
	}
	require.Equal(t, "s3cret-1", open())
	// A stale If-Match, another host's BMC address, a bad body, a viewer:
	// refused, and the stored password is unchanged.
	e.problem(e.do("PUT", "/v1/hosts/"+did+"/bmc", e.admin,
		map[string]any{"address": "10.0.0.17", "protocol": "redfish", "username": "root", "password": "s3cret-2"}, "If-Match", tag), 412, api.ProblemPrecondition)
	e.problem(e.do("PUT", "/v1/hosts/"+did+"/bmc", e.admin,
		map[string]any{"address": h["bmc"].(map[string]any)["address"], "protocol": "ipmi", "username": "root", "password": "s3cret-2"}), 409, api.ProblemConflict)
	e.problem(e.do("PUT", "/v1/hosts/"+did+"/bmc", e.admin,
		map[string]any{"address": "10.0.0.17", "protocol": "telnet", "username": "root", "password": "s3cret-2"}), 422, api.ProblemValidation)
	viewer, _ := e.token("vic", rackcloud.RoleViewer)
	e.problem(e.do("PUT", "/v1/hosts/"+did+"/bmc", viewer,
		map[string]any{"address": "10.0.0.17", "protocol": "redfish", "username": "root", "password": "s3cret-2"}), 403, api.ProblemForbidden)
	require.Equal(t, "s3cret-1", open())
	e.must(200, "PUT", "/v1/hosts/"+did+"/bmc", e.admin,
		map[string]any{"address": "10.0.0.17:8443", "protocol": "redfish", "username": "root", "password": "s3cret-2"})
	require.Equal(t, "s3cret-2", open())
	audit := e.must(200, "GET", "/v1/audit-events?action=setHostBMC", e.admin, nil)["items"].([]any)
	require.NotEmpty(t, audit)
	require.NotContains(t, fmt.Sprint(audit), "s3cret")
}

func TestTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.fixture("delta")

	// Missing, malformed and unknown tokens: 401 with WWW-Authenticate.
	for _, tok := range []string{"", "nope", "rct_doesnotexist"} {
		r := e.do("GET", "/v1/regions", tok, nil)
		e.problem(r, 401, api.ProblemUnauthorized)
		require.Contains(t, r.Header.Get("WWW-Authenticate"), "Bearer")
	}
	r := e.do("GET", "/v1/regions", "", nil, "Authorization", "Basic YWRtaW46YWRtaW4=")
	e.problem(r, 401, api.ProblemUnauthorized)

	// The secret is shown once and stored only as a hash.
	m := e.must(201, "POST", "/v1/tokens", f.member, map[string]any{"name": "ci", "role": "viewer", "project_ids": []string{f.project}, "ttl_seconds": 3600})
	secret := m["secret"].(string)
	require.True(t, strings.HasPrefix(secret, "rct_"))
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM tokens WHERE hash::text LIKE '%' || $1 || '%' OR prefix = $1`, secret).Scan(&n))
	require.Zero(t, n)
	id := m["token"].(map[string]any)["id"].(string)
	got := e.must(200, "GET", "/v1/tokens/"+id, f.member, nil)
	require.NotContains(t, fmt.Sprint(got), secret)
	who := e.must(200, "GET", "/v1/whoami", secret, nil)
	require.Equal(t, "viewer", who["role"])

	// Members cannot mint stronger tokens or tokens for other projects.
	e.problem(e.do("POST", "/v1/tokens", f.member, map[string]any{"name": "x", "role": "admin"}), 403, api.ProblemForbidden)
	other := e.must(201, "POST", "/v1/projects", e.admin, map[string]any{"name": "other"})["id"].(string)
	e.problem(e.do("POST", "/v1/tokens", f.member, map[string]any{"name": "x", "role": "member", "project_ids": []string{other}}), 403, api.ProblemForbidden)

	// Revoked tokens stop working at once.
	e.must(204, "DELETE", "/v1/tokens/"+id, f.member, nil)
	e.problem(e.do("GET", "/v1/whoami", secret, nil), 401, api.ProblemUnauthorized)

	// Expired tokens too.
	exp := e.must(201, "POST", "/v1/tokens", e.admin, map[string]any{"name": "short", "role": "viewer", "ttl_seconds": 60})
	_, err := e.pool.Exec(context.Background(), `UPDATE tokens SET expires_at = now() - interval '1 second' WHERE id = $1`, exp["token"].(map[string]any)["id"])
	require.NoError(t, err)
	e.problem(e.do("GET", "/v1/whoami", exp["secret"].(string), nil), 401, api.ProblemUnauthorized)
}

func TestCancelAndResumeEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.fixture("zeta")
	r := e.do("POST", "/v1/guests", f.member, map[string]any{"project_id": f.project, "name": "g", "kind": "vm",
		"flavor": map[string]any{"vcpu": 1, "memory_mib": 512, "disk_gib": 1}, "image_id": f.image})
	require.Equal(t, 202, r.Code, r)
	e.waitTask(f.member, r.json(t)["id"].(string))
	guest := strings.TrimPrefix(r.json(t)["target"].(string), "guest/")

	// The reboot task waits until canceled; a second change of the same
	// guest meanwhile is a conflict.
	rb := e.must(202, "POST", "/v1/guests/"+guest+"/reboot", f.member, nil)
	e.problem(e.do("POST", "/v1/guests/"+guest+"/stop", f.member, nil), 409, api.ProblemConflict)
	viewer, _ := e.token("zeta-viewer", rackcloud.RoleViewer, f.project)
	e.problem(e.do("POST", "/v1/tasks/"+rb["id"].(string)+"/cancel", viewer, nil), 403, api.ProblemForbidden)
	// While the task waits, its stream sends keep-alive comments.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/v1/tasks/"+rb["id"].(string)+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+f.member)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() && sc.Text() != ": keep-alive" {
	}
	require.NoError(t, sc.Err())
	res.Body.Close()

	c := e.must(202, "POST", "/v1/tasks/"+rb["id"].(string)+"/cancel", f.member, nil)
	require.Equal(t, true, c["cancel_requested"])
	types := e.waitTask(f.member, rb["id"].(string))
	require.Equal(t, "canceled", types[len(types)-1])
	require.Contains(t, types, "cancel_requested")
	e.problem(e.do("POST", "/v1/tasks/"+rb["id"].(string)+"/cancel", f.member, nil), 409, api.ProblemConflict)

	// Resuming after an event replays only the later ones.
	all := e.waitTask(f.member, rb["id"].(string))
	later := e.waitTask(f.member, rb["id"].(string), "Last-Event-ID", "2")
	require.Equal(t, all[2:], later)
	require.Equal(t, all[1:], e.waitTask(f.member, rb["id"].(string)+"?after=1"))

	// Tasks list newest first, filtered, scoped.
	list := e.must(200, "GET", "/v1/tasks?state=canceled", f.member, nil)["items"].([]any)
	require.Len(t, list, 1)
	other := e.fixture("eta")
	require.Empty(t, e.must(200, "GET", "/v1/tasks", other.member, nil)["items"])
}
