package api_test

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
)

// TestWalkEveryOperationWithoutRights calls every operation of the served
// OpenAPI document with a viewer token of project A and with a member
// token of project B, and proves that nothing of A leaks to B and that
// neither changes anything.
func TestWalkEveryOperationWithoutRights(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWalk(t, e)
	a, ops, bodies, secretsOfA, guestA := w.a, w.ops, w.bodies, w.secretsOfA, w.guestA
	e.fixture("bravo") // another project with its own member, not used
	projectB := e.must(201, "POST", "/v1/projects", e.admin, map[string]any{"name": "bravo-2"})["id"].(string)
	memberB, _ := e.token("bravo-member-2", rackcloud.RoleMember, projectB)
	viewerA, _ := e.token("alpha-viewer", rackcloud.RoleViewer, a.project)

	before := e.snapshot()
	for _, who := range []struct{ name, token string }{{"viewer of A", viewerA}, {"member of B", memberB}} {
		for _, o := range ops {
			r := e.do(o.method, o.path, who.token, bodies[o.id])
			where := who.name + " " + o.id + " " + o.method + " " + o.path
			if o.method != http.MethodGet {
				require.Contains(t, []int{403, 404}, r.Code, "%s changed or tried to: %s", where, r)
				continue
			}
			require.Less(t, r.Code, 500, "%s: %s", where, r)
			if who.token == memberB {
				body := string(r.Body)
				if r.Code == http.StatusNotFound { // it names the ID asked for, known to the caller
					body = strings.ReplaceAll(body, `\"`+o.asked+`\"`, "")
				}
				for what, s := range secretsOfA {
					require.NotContains(t, body, s, "%s leaks project A's %s", where, what)
				}
			}
			if r.Code == 200 && who.token == viewerA && o.id == "getGuest" {
				require.Contains(t, string(r.Body), guestA, "the viewer sees its project's guest")
			}
		}
	}
	if diff := diffLines(before, e.snapshot()); diff != "" {
		t.Fatalf("the walk changed the database:\n%s", diff)
	}
	// The refused changes are in the audit log as denied.
	denied := e.must(200, "GET", "/v1/audit-events?outcome=denied&limit=1000", e.admin, nil)["items"].([]any)
	require.GreaterOrEqual(t, len(denied), 30)
}

// walkOp is one operation of the served OpenAPI document, its path
// filled with a fixture's ID.
type walkOp struct{ method, path, id, asked string }

// walk is a project's fixture and every operation of the API, with a
// body for each that takes one.
type walk struct {
	a          fixture
	ops        []walkOp
	bodies     map[string]any
	secretsOfA map[string]string
	guestA     string
}

func newWalk(t *testing.T, e *env) walk {
	a := e.fixture("alpha")

	// Project A's things.
	r := e.do("POST", "/v1/guests", a.member, map[string]any{"project_id": a.project, "name": "secret-guest", "kind": "vm",
		"flavor": map[string]any{"vcpu": 1, "memory_mib": 512, "disk_gib": 1}, "image_id": a.image})
	require.Equal(t, 202, r.Code, r)
	taskA := r.json(t)["id"].(string)
	guestA := strings.TrimPrefix(r.json(t)["target"].(string), "guest/")
	e.waitTask(a.member, taskA)
	pgA := e.must(201, "POST", "/v1/placement-groups", a.member, map[string]any{"project_id": a.project, "name": "secret-pg", "policy": "anti-affinity"})["id"].(string)
	ruleA := e.must(201, "POST", "/v1/alert-rules", e.admin, map[string]any{"name": "secret-rule", "expr": "up", "op": "<", "threshold": 1,
		"severity": "warning", "scope": "project", "scope_id": a.project})["id"].(string)
	userA := e.must(200, "GET", "/v1/tokens/"+a.memberTokenID, e.admin, nil)["user_id"].(string)
	enrollRule := e.must(201, "POST", "/v1/enroll-rules", e.admin, map[string]any{"name": "walk-rule", "priority": 1,
		"match": map[string]any{"rack_id": a.rack}, "set": map[string]any{"role": "kvm", "image_id": a.image}})["id"].(string)
	secretsOfA := map[string]string{"project": a.project, "guest": guestA, "task": taskA, "placement group": pgA,
		"alert rule": ruleA, "token": a.memberTokenID, "user": userA, "guest name": "secret-guest", "group name": "secret-pg"}

	ids := map[string]string{"regions": a.region, "zones": a.zone, "racks": a.rack, "hosts": a.host, "images": a.image,
		"guests": guestA, "placement-groups": pgA, "projects": a.project, "users": userA, "tokens": a.memberTokenID,
		"alert-rules": ruleA, "tasks": taskA, "enroll-rules": enrollRule}
	const someMAC = "52:54:00:ee:ee:01"
	bodies := map[string]any{
		"createRegion":         map[string]any{"name": "walk"},
		"updateRegion":         map[string]any{"labels": map[string]string{"x": "y"}},
		"createZone":           map[string]any{"region_id": a.region, "name": "walk"},
		"updateZone":           map[string]any{"labels": map[string]string{"x": "y"}},
		"createRack":           map[string]any{"zone_id": a.zone, "name": "walk"},
		"updateRack":           map[string]any{"labels": map[string]string{"x": "y"}},
		"registerHost":         map[string]any{"macs": []string{someMAC}},
		"updateHost":           map[string]any{"labels": map[string]string{"x": "y"}},
		"setHostBMC":           map[string]any{"address": "127.0.0.1:6230", "protocol": "ipmi", "username": "walk", "password": "walk-secret"},
		"provisionHost":        map[string]any{"role": "kvm", "image_id": a.image},
		"setHostMaintenance":   map[string]any{"enabled": true},
		"createImage":          map[string]any{"name": "walk", "url": "http://127.0.0.1/w", "checksum": checksum, "format": "raw"},
		"updateImage":          map[string]any{"labels": map[string]string{"x": "y"}},
		"createGuest":          map[string]any{"project_id": a.project, "name": "walk", "kind": "vm", "flavor": map[string]any{"vcpu": 1, "memory_mib": 512, "disk_gib": 1}, "image_id": a.image},
		"updateGuest":          map[string]any{"labels": map[string]string{"x": "y"}},
		"placementDryRun":      map[string]any{"project_id": a.project, "name": "walk", "kind": "vm", "flavor": map[string]any{"vcpu": 1, "memory_mib": 512, "disk_gib": 1}, "image_id": a.image},
		"migrateGuest":         map[string]any{},
		"evacuateHost":         map[string]any{"fenced": false},
		"createPlacementGroup": map[string]any{"project_id": a.project, "name": "walk", "policy": "affinity"},
		"createProject":        map[string]any{"name": "walk"},
		"updateProject":        map[string]any{"labels": map[string]string{"x": "y"}},
		"setProjectQuota":      map[string]any{"reserved": map[string]any{"vcpu": 100, "memory_mib": 100, "disk_gib": 100, "hosts": 1}},
		"createUser":           map[string]any{"name": "walk"},
		"updateUser":           map[string]any{"labels": map[string]string{"x": "y"}},
		"createToken":          map[string]any{"name": "walk", "role": "member", "user_id": userA, "project_ids": []string{a.project}},
		"createAlertRule":      map[string]any{"name": "walk", "expr": "up", "op": "<", "threshold": 1, "severity": "warning", "scope": "project", "scope_id": a.project},
		"updateAlertRule":      map[string]any{"labels": map[string]string{"x": "y"}},
		"createEnrollRule":     map[string]any{"name": "walk", "priority": 2, "match": map[string]any{"mac_prefix": "52:54"}},
		"updateEnrollRule":     map[string]any{"priority": 3},
		"availabilityWebhook":  map[string]any{"alerts": []any{map[string]any{"status": "resolved", "labels": map[string]string{"alertname": "HostDown"}}}},
		"recordBootEvents":     []any{map[string]any{"time": "2026-01-02T03:04:05Z", "mac": "52:54:00:ee:ee:02", "kind": "dhcp.discover", "client": "bios"}},
	}

	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string          `json:"operationId"`
			RequestBody json.RawMessage `json:"requestBody"`
		} `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(e.do("GET", "/openapi.json", "", nil).Body, &doc))
	var ops []walkOp
	for p, methods := range doc.Paths {
		for m, o := range methods {
			path, asked := p, ""
			if strings.Contains(p, "{id}") {
				coll := strings.Split(strings.TrimPrefix(p, "/v1/"), "/")[0]
				id, ok := ids[coll]
				require.True(t, ok, "no ID for %s %s: extend the walk", m, p)
				path, asked = strings.Replace(p, "{id}", id, 1), id
			}
			if len(o.RequestBody) > 0 {
				_, ok := bodies[o.OperationID]
				require.True(t, ok, "no body for %s: extend the walk", o.OperationID)
			}
			ops = append(ops, walkOp{strings.ToUpper(m), path, o.OperationID, asked})
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].id < ops[j].id })
	require.Greater(t, len(ops), 60)

	// Deletes last, so that a wrongly allowed delete cannot hide another leak.
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].method != "DELETE" && ops[j].method == "DELETE" })
	return walk{a: a, ops: ops, bodies: bodies, secretsOfA: secretsOfA, guestA: guestA}
}

// TestBootRoleMayOnlyBoot walks every operation with a boot service's
// token: only reading a boot profile and recording boot events pass;
// everything else is 403 and changes nothing. The events it records are
// audited as the boot service itself.
func TestBootRoleMayOnlyBoot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := newWalk(t, e)
	boot := e.must(201, "POST", "/v1/tokens", e.admin, map[string]any{"name": "rack1", "role": "boot"})["secret"].(string)
	mayBoot := map[string]bool{"getBootProfile": true, "recordBootEvents": true, "getInstallPlan": true}
	before := e.snapshot()
	passed := map[string]bool{}
	for _, o := range w.ops {
		if mayBoot[o.id] {
			continue
		}
		r := e.do(o.method, o.path, boot, w.bodies[o.id])
		require.Equal(t, 403, r.Code, "boot token %s %s %s: %s", o.id, o.method, o.path, r)
	}
	if diff := diffLines(before, e.snapshot()); diff != "" {
		t.Fatalf("the boot token changed the database:\n%s", diff)
	}
	for _, o := range w.ops {
		if !mayBoot[o.id] {
			continue
		}
		path := strings.Replace(o.path, "{mac}", "52:54:00:ee:ee:02", 1)
		r := e.do(o.method, path, boot, w.bodies[o.id])
		require.Contains(t, []int{200, 202, 404}, r.Code, "boot token %s: %s", o.id, r)
		passed[o.id] = true
	}
	require.Len(t, passed, len(mayBoot), "every boot operation is in the document")
	r := e.do("GET", "/v1/boot/profiles/52:54:00:ee:ee:02", boot, nil)
	require.Equal(t, 200, r.Code, "the boot service reads the profile of the host its events discovered: %s", r)
	ev := e.must(200, "GET", "/v1/audit-events?action=discoverHost", e.admin, nil)["items"].([]any)
	require.NotEmpty(t, ev)
	require.Equal(t, "boot:rack1", ev[0].(map[string]any)["actor"], "audit names the boot service, not a user")

	// Members and viewers cannot mint boot tokens; operators can.
	member := e.must(201, "POST", "/v1/tokens", e.admin, map[string]any{"name": "m", "role": "member", "project_ids": []string{w.a.project}})["secret"].(string)
	require.Equal(t, 403, e.do("POST", "/v1/tokens", member, map[string]any{"name": "b", "role": "boot"}).Code)
	op := e.must(201, "POST", "/v1/tokens", e.admin, map[string]any{"name": "o", "role": "operator"})["secret"].(string)
	e.must(201, "POST", "/v1/tokens", op, map[string]any{"name": "b", "role": "boot"})
}

// A minted token never outlives its parent, and revoking a token revokes
// every token minted from it, transitively; siblings stay.
func TestTokenLineage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mk := func(by, name, role string, ttl int) (secret, id string, m map[string]any) {
		body := map[string]any{"name": name, "role": role}
		if ttl > 0 {
			body["ttl_seconds"] = ttl
		}
		out := e.must(201, "POST", "/v1/tokens", by, body)
		tok := out["token"].(map[string]any)
		return out["secret"].(string), tok["id"].(string), tok
	}
	parent, parentID, pm := mk(e.admin, "parent", "operator", 3600)
	child, childID, cm := mk(parent, "child", "operator", 7*24*3600) // asks for a week
	require.Equal(t, parentID, cm["parent_id"])
	require.Equal(t, pm["expires_at"], cm["expires_at"], "capped at the parent's expiry")
	_, _, nm := mk(parent, "no-ttl", "viewer", 0)
	require.Equal(t, pm["expires_at"], nm["expires_at"], "no TTL still ends with the parent")
	shorter, _, sm := mk(parent, "shorter", "viewer", 60)
	require.NotEqual(t, pm["expires_at"], sm["expires_at"], "a shorter TTL is kept")
	grandchild, _, _ := mk(child, "grandchild", "viewer", 0)
	_, siblingID, _ := mk(e.admin, "sibling", "viewer", 0)

	for _, s := range []string{parent, child, grandchild, shorter} {
		require.Equal(t, 200, e.do("GET", "/v1/whoami", s, nil).Code)
	}
	e.must(204, "DELETE", "/v1/tokens/"+parentID, e.admin, nil)
	for name, s := range map[string]string{"parent": parent, "child": child, "grandchild": grandchild, "shorter": shorter} {
		require.Equal(t, 401, e.do("GET", "/v1/whoami", s, nil).Code, "%s is revoked with its parent", name)
	}
	require.Equal(t, 404, e.do("GET", "/v1/tokens/"+childID, e.admin, nil).Code)
	e.must(200, "GET", "/v1/tokens/"+siblingID, e.admin, nil)
}
