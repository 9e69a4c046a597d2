package api_test

import (
	"strings"
	"testing"

	"github.com/rackcloud/rackcloud/api"
)

// Every bad request gets the right 4xx problem document, and none of
// them changes anything.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.fixture("eps")
	{
		r := e.do("POST", "/v1/guests", f.member, map[string]any{"project_id": f.project, "name": "g", "kind": "vm",
			"flavor": map[string]any{"vcpu": 1, "memory_mib": 512, "disk_gib": 1}, "image_id": f.image})
		if r.Code != 202 {
			t.Fatalf("create guest: %s", r)
		}
		e.waitTask(f.member, r.json(t)["id"].(string))
		g := e.do("GET", "/v1/guests/"+strings.TrimPrefix(r.json(t)["target"].(string), "guest/"), f.member, nil)
		f.guest = g.json(t)["id"].(string)
	}
	const missing = "00000000-0000-4000-8000-000000000000"
	guest := func(mut func(map[string]any)) map[string]any {
		b := map[string]any{"project_id": f.project, "name": "g2", "kind": "vm",
			"flavor": map[string]any{"vcpu": 1, "memory_mib": 512, "disk_gib": 1}, "image_id": f.image}
		mut(b)
		return b
	}
	before := e.snapshot()

	cases := []struct {
		name         string
		method, path string
		token        string
		body         any
		hdr          []string
		code         int
		typ          string
	}{
		{"unknown field", "POST", "/v1/regions", e.admin, `{"name":"x","colour":"red"}`, nil, 422, api.ProblemValidation},
		{"wrong type", "POST", "/v1/regions", e.admin, `{"name":5}`, nil, 422, api.ProblemValidation},
		{"bad name", "POST", "/v1/regions", e.admin, `{"name":"Bad Name!"}`, nil, 422, api.ProblemValidation},
		{"name too long", "POST", "/v1/regions", e.admin, `{"name":"` + strings.Repeat("a", 64) + `"}`, nil, 422, api.ProblemValidation},
		{"malformed json", "POST", "/v1/regions", e.admin, `{"name":`, nil, 400, api.ProblemValidation},
		{"body is an array", "POST", "/v1/regions", e.admin, `[]`, nil, 422, api.ProblemValidation},
		{"empty body", "POST", "/v1/regions", e.admin, ``, nil, 400, api.ProblemValidation},
		{"oversized body", "POST", "/v1/regions", e.admin, `{"name":"x","description":"` + strings.Repeat("a", 100<<10) + `"}`, nil, 413, api.ProblemTooLarge},
		{"out of range", "POST", "/v1/racks", e.admin, map[string]any{"zone_id": f.zone, "name": "r9", "positions": 500}, nil, 422, api.ProblemValidation},
		{"bad enum", "POST", "/v1/guests", f.member, guest(func(b map[string]any) { b["kind"] = "floppy" }), nil, 422, api.ProblemValidation},
		{"zero vcpu", "POST", "/v1/guests", f.member, guest(func(b map[string]any) { b["flavor"] = map[string]any{"vcpu": 0, "memory_mib": 512, "disk_gib": 1} }), nil, 422, api.ProblemValidation},
		{"missing field", "POST", "/v1/guests", f.member, guest(func(b map[string]any) { delete(b, "image_id") }), nil, 422, api.ProblemValidation},
		{"malformed ID in body", "POST", "/v1/guests", f.member, guest(func(b map[string]any) { b["image_id"] = "nope" }), nil, 422, api.ProblemValidation},
		{"unknown image", "POST", "/v1/guests", f.member, guest(func(b map[string]any) { b["image_id"] = missing }), nil, 422, api.ProblemValidation},
		{"bad label key", "POST", "/v1/guests", f.member, guest(func(b map[string]any) { b["labels"] = map[string]string{"-bad key": "x"} }), nil, 422, api.ProblemValidation},
		{"duplicate name", "POST", "/v1/guests", f.member, guest(func(b map[string]any) { b["name"] = "g" }), nil, 409, api.ProblemConflict},
		{"other project in body", "POST", "/v1/guests", f.member, guest(func(b map[string]any) { b["project_id"] = missing }), nil, 403, api.ProblemForbidden},
		{"bad MAC", "POST", "/v1/hosts", e.admin, map[string]any{"macs": []string{"52:54:00:zz:00:01"}}, nil, 422, api.ProblemValidation},
		{"host without MAC or BMC", "POST", "/v1/hosts", e.admin, map[string]any{"name": "h"}, nil, 422, api.ProblemValidation},
		{"duplicate MAC", "POST", "/v1/hosts", e.admin, map[string]any{"name": "h2", "macs": []string{macFor("eps", 1)}}, nil, 409, api.ProblemConflict},
		{"malformed ID in path", "GET", "/v1/hosts/not-a-uuid", e.admin, nil, nil, 422, api.ProblemValidation},
		{"malformed ID on delete", "DELETE", "/v1/guests/123", f.member, nil, nil, 422, api.ProblemValidation},
		{"unknown ID", "GET", "/v1/regions/" + missing, e.admin, nil, nil, 404, api.ProblemNotFound},
		{"delete unknown", "DELETE", "/v1/images/" + missing, e.admin, nil, nil, 404, api.ProblemNotFound},
		{"delete in use", "DELETE", "/v1/images/" + f.image, e.admin, nil, nil, 409, api.ProblemConflict},
		{"stale If-Match", "PATCH", "/v1/guests/" + f.guest, f.member, map[string]any{"ha": "restart"}, []string{"If-Match", `"1"`}, 412, api.ProblemPrecondition},
		{"stale If-Match delete", "DELETE", "/v1/guests/" + f.guest, f.member, nil, []string{"If-Match", `"999"`}, 412, api.ProblemPrecondition},
		{"bad cursor", "GET", "/v1/hosts?cursor=!!!", e.admin, nil, nil, 422, api.ProblemValidation},
		{"forged cursor", "GET", "/v1/hosts?cursor=bm90LWEtY3Vyc29y", e.admin, nil, nil, 422, api.ProblemValidation},
		{"bad selector", "GET", "/v1/guests?label_selector=novalue", f.member, nil, nil, 422, api.ProblemValidation},
		{"limit too big", "GET", "/v1/regions?limit=5000", e.admin, nil, nil, 422, api.ProblemValidation},
		{"limit zero", "GET", "/v1/regions?limit=0", e.admin, nil, nil, 422, api.ProblemValidation},
		{"bad state filter", "GET", "/v1/hosts?state=sleepy", e.admin, nil, nil, 422, api.ProblemValidation},
		{"negative quota", "PUT", "/v1/projects/" + f.project + "/quota", e.admin, map[string]any{"reserved": map[string]any{"vcpu": -1, "memory_mib": 0, "disk_gib": 0, "hosts": 0}}, nil, 422, api.ProblemValidation},
		{"short ttl", "POST", "/v1/tokens", e.admin, map[string]any{"name": "x", "role": "viewer", "ttl_seconds": 1}, nil, 422, api.ProblemValidation},
		{"unknown role", "POST", "/v1/tokens", e.admin, map[string]any{"name": "x", "role": "root"}, nil, 422, api.ProblemValidation},
		{"fleet rule with scope_id", "POST", "/v1/alert-rules", e.admin, map[string]any{"name": "x", "expr": "up", "op": "<", "threshold": 1, "severity": "warning", "scope": "fleet", "scope_id": f.zone}, nil, 422, api.ProblemValidation},
		{"rule with a bad expression", "POST", "/v1/alert-rules", e.admin, map[string]any{"name": "x", "expr": "sum(up", "op": "<", "threshold": 1, "severity": "warning", "scope": "fleet"}, nil, 422, api.ProblemValidation},
		{"enroll rule with a bad glob", "POST", "/v1/enroll-rules", e.admin, map[string]any{"name": "x", "priority": 1, "match": map[string]any{"vendor": "Dell["}}, nil, 422, api.ProblemValidation},
		{"enroll rule with a bad MAC prefix", "POST", "/v1/enroll-rules", e.admin, map[string]any{"name": "x", "priority": 1, "match": map[string]any{"mac_prefix": "zz"}}, nil, 422, api.ProblemValidation},
		{"enroll rule with an unknown image", "POST", "/v1/enroll-rules", e.admin, map[string]any{"name": "x", "priority": 1, "set": map[string]any{"role": "kvm", "image_id": missing}}, nil, 422, api.ProblemValidation},
		{"enroll rule with a role its image does not serve", "POST", "/v1/enroll-rules", e.admin, map[string]any{"name": "x", "priority": 1, "set": map[string]any{"role": "bm", "image_id": f.image}}, nil, 422, api.ProblemValidation},
		{"provision with wrong role", "POST", "/v1/hosts/" + f.host + "/provision", e.admin, map[string]any{"role": "docker", "image_id": f.image}, nil, 422, api.ProblemValidation},
		{"provision a discovered host", "POST", "/v1/hosts/" + f.host + "/provision", e.admin, map[string]any{"role": "kvm", "image_id": f.image}, nil, 409, api.ProblemConflict},
		{"deprovision a discovered host", "POST", "/v1/hosts/" + f.host + "/deprovision", e.admin, nil, nil, 409, api.ProblemConflict},
		{"maintenance of a discovered host", "POST", "/v1/hosts/" + f.host + "/maintenance", e.admin, map[string]any{"enabled": true}, nil, 409, api.ProblemConflict},
		{"no token", "GET", "/v1/regions", "", nil, nil, 401, api.ProblemUnauthorized},
		{"wrong token", "POST", "/v1/regions", "rct_wrong", map[string]any{"name": "x"}, nil, 401, api.ProblemUnauthorized},
		{"member on hosts", "GET", "/v1/hosts", f.member, nil, nil, 403, api.ProblemForbidden},
		{"member creates a region", "POST", "/v1/regions", f.member, map[string]any{"name": "x"}, nil, 403, api.ProblemForbidden},
		{"task on nothing", "GET", "/v1/tasks/" + missing, e.admin, nil, nil, 404, api.ProblemNotFound},
		{"cancel an ended task", "POST", "/v1/tasks/" + missing + "/cancel", e.admin, nil, nil, 404, api.ProblemNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := e.with(t)
			r := e.do(c.method, c.path, c.token, c.body, c.hdr...)
			e.problem(r, c.code, c.typ)
			if c.code == 422 || c.code == 400 {
				if r.json(t)["detail"] == "" {
					t.Errorf("no detail: %s", r)
				}
			}
		})
	}
	if t.Failed() {
		return
	}
	if diff := diffLines(before, e.snapshot()); diff != "" {
		t.Fatalf("bad requests changed the database:\n%s", diff)
	}
}

// diffLines returns the lines of b that differ from a.
func diffLines(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for i := range max(len(al), len(bl)) {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			out = append(out, "- "+x, "+ "+y)
		}
	}
	return strings.Join(out, "\n")
}
