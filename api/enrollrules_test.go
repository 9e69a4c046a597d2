package api_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/api"
	"github.com/rackcloud/rackcloud/store"
)

func TestEnrollRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.fixture("enroll")
	guestImage := e.must(201, "POST", "/v1/images", e.admin, map[string]any{"name": "guest-img", "url": "http://127.0.0.1/g.qcow2",
		"checksum": checksum, "format": "qcow2"})["id"].(string)
	const missing = "00000000-0000-4000-8000-000000000000"

	// Created out of order, listed in priority order, a page at a time.
	big := e.must(201, "POST", "/v1/enroll-rules", e.admin, map[string]any{"name": "big-kvm", "priority": 20,
		"match": map[string]any{"vendor": "QEMU*", "min_memory_mib": 4096, "rack_id": f.rack},
		"set":   map[string]any{"role": "kvm", "image_id": f.image, "labels": map[string]string{"pool": "kvm"}}, "provision": true})
	require.Equal(t, map[string]any{"vendor": "QEMU*", "min_memory_mib": float64(4096), "rack_id": f.rack}, big["match"])
	require.Equal(t, true, big["provision"])
	small := e.must(201, "POST", "/v1/enroll-rules", e.admin, map[string]any{"name": "small", "priority": 10,
		"match": map[string]any{"mac_prefix": "52:54:00:ff"}, "set": map[string]any{"labels": map[string]string{"pool": "small"}}})
	rest := e.must(201, "POST", "/v1/enroll-rules", e.admin, map[string]any{"name": "rest", "priority": 30})
	r := e.do("GET", "/v1/enroll-rules?limit=2", f.member, nil)
	require.Equal(t, 200, r.Code, r)
	var got []string
	for _, it := range r.json(t)["items"].([]any) {
		got = append(got, it.(map[string]any)["name"].(string))
	}
	require.Equal(t, []string{"small", "big-kvm"}, got, "members read rules, in priority order")
	next := r.json(t)["next_cursor"].(string)
	items := e.must(200, "GET", "/v1/enroll-rules?limit=2&cursor="+next, e.admin, nil)["items"].([]any)
	require.Len(t, items, 1)
	require.Equal(t, "rest", items[0].(map[string]any)["name"])

	// Refusals name the field.
	for name, c := range map[string]struct {
		body map[string]any
		code int
		loc  string
	}{
		"duplicate priority":    {map[string]any{"name": "x", "priority": 20}, 409, ""},
		"duplicate name":        {map[string]any{"name": "small", "priority": 99}, 409, ""},
		"bad role":              {map[string]any{"name": "x", "priority": 1, "set": map[string]any{"role": "vm"}}, 422, "body.set.role"},
		"unknown image":         {map[string]any{"name": "x", "priority": 1, "set": map[string]any{"role": "kvm", "image_id": missing}}, 422, "body.set.image_id"},
		"guest image":           {map[string]any{"name": "x", "priority": 1, "set": map[string]any{"role": "kvm", "image_id": guestImage}}, 422, "body.set.image_id"},
		"image without role":    {map[string]any{"name": "x", "priority": 1, "set": map[string]any{"role": "docker", "image_id": f.image}}, 422, "body.set.role"},
		"bad glob":              {map[string]any{"name": "x", "priority": 1, "match": map[string]any{"product": "R6[40"}}, 422, "body.match.product"},
		"bad mac prefix":        {map[string]any{"name": "x", "priority": 1, "match": map[string]any{"mac_prefix": "52:54:0"}}, 422, "body.match.mac_prefix"},
		"upper-case mac prefix": {map[string]any{"name": "x", "priority": 1, "match": map[string]any{"mac_prefix": "52:54:00:AA"}}, 422, "body.match.mac_prefix"},
		"bad firmware":          {map[string]any{"name": "x", "priority": 1, "match": map[string]any{"firmware": "efi"}}, 422, "body.match.firmware"},
		"unknown rack":          {map[string]any{"name": "x", "priority": 1, "match": map[string]any{"rack_id": missing}}, 422, "body.match.rack_id"},
		"unknown set rack":      {map[string]any{"name": "x", "priority": 1, "set": map[string]any{"rack_id": missing}}, 422, "body.set.rack_id"},
		"provision what":        {map[string]any{"name": "x", "priority": 1, "set": map[string]any{"role": "kvm"}, "provision": true}, 422, "body.set.image_id"},
		"negative priority":     {map[string]any{"name": "x", "priority": -1}, 422, "body.priority"},
	} {
		t.Run(name, func(t *testing.T) {
			e := e.with(t)
			r := e.do("POST", "/v1/enroll-rules", e.admin, c.body)
			typ := api.ProblemValidation
			if c.code == 409 {
				typ = api.ProblemConflict
			}
			e.problem(r, c.code, typ)
			if c.loc != "" {
				errs, _ := r.json(t)["errors"].([]any)
				require.NotEmpty(t, errs, r)
				require.Equal(t, c.loc, errs[0].(map[string]any)["location"], r)
			}
		})
	}
	r = e.do("POST", "/v1/enroll-rules", f.member, map[string]any{"name": "x", "priority": 1})
	e.problem(r, 403, api.ProblemForbidden)

	// Updates are checked as creates are, and guarded by If-Match.
	id := small["id"].(string)
	r = e.do("PATCH", "/v1/enroll-rules/"+id, e.admin, map[string]any{"priority": 20})
	e.problem(r, 409, api.ProblemConflict)
	r = e.do("PATCH", "/v1/enroll-rules/"+id, e.admin, map[string]any{"match": map[string]any{"serial": "["}})
	e.problem(r, 422, api.ProblemValidation)
	r = e.do("PATCH", "/v1/enroll-rules/"+id, e.admin, map[string]any{"priority": 5}, "If-Match", `"9"`)
	e.problem(r, 412, api.ProblemPrecondition)
	r = e.do("PATCH", "/v1/enroll-rules/"+id, e.admin, map[string]any{"priority": 5, "match": map[string]any{"mac_prefix": "52:54:00:fe"}}, "If-Match", `"1"`)
	require.Equal(t, 200, r.Code, r)
	require.Equal(t, `"2"`, r.Header.Get("ETag"))
	require.Equal(t, map[string]any{"mac_prefix": "52:54:00:fe"}, r.json(t)["match"])

	// An image a rule installs cannot be deleted.
	e.problem(e.do("DELETE", "/v1/images/"+f.image, e.admin, nil), 409, api.ProblemConflict)

	// A host before and after inspection: the verdicts say why.
	match := e.must(200, "GET", "/v1/hosts/"+f.host+"/enroll-match", e.admin, nil)
	require.Equal(t, rest["id"], match["matching_rule"])
	require.Empty(t, match["enroll_verdicts"])
	require.Equal(t, []any{
		map[string]any{"rule_id": id, "rule_name": "small", "matched": false, "reason": "mac " + macFor("enroll", 1) + " does not start with 52:54:00:fe"},
		map[string]any{"rule_id": big["id"], "rule_name": "big-kvm", "matched": false, "reason": "no inventory yet"},
		map[string]any{"rule_id": rest["id"], "rule_name": "rest", "matched": true, "reason": "matches"},
	}, match["matching_verdicts"])
	ctx := context.Background()
	_, err := store.SetHostInventory(ctx, e.pool, f.host, rackcloud.Inventory{Vendor: "QEMU", Product: "Standard PC", CPUs: 4, MemoryMiB: 2048},
		rackcloud.Resources{}, rackcloud.Resources{})
	require.NoError(t, err)
	match = e.must(200, "GET", "/v1/hosts/"+f.host+"/enroll-match", e.admin, nil)
	require.Equal(t, "memory 2048 MiB < 4096", match["matching_verdicts"].([]any)[1].(map[string]any)["reason"])
	_, err = store.SetHostInventory(ctx, e.pool, f.host, rackcloud.Inventory{Vendor: "QEMU", CPUs: 4, MemoryMiB: 8192},
		rackcloud.Resources{}, rackcloud.Resources{})
	require.NoError(t, err)
	m, why, err := store.EnrollRuleMatch(ctx, e.pool, f.host)
	require.NoError(t, err)
	require.NoError(t, store.RecordEnrollMatch(ctx, e.pool, f.host, m.ID, why))
	match = e.must(200, "GET", "/v1/hosts/"+f.host+"/enroll-match", e.admin, nil)
	require.Equal(t, big["id"], match["enrolled_by_rule"])
	require.Equal(t, big["id"], match["matching_rule"])
	require.Len(t, match["enroll_verdicts"], 2)
	e.problem(e.do("GET", "/v1/hosts/"+f.host+"/enroll-match", f.member, nil), 403, api.ProblemForbidden)
	e.problem(e.do("GET", "/v1/hosts/"+missing+"/enroll-match", e.admin, nil), 404, api.ProblemNotFound)

	// Deleting the rule: the host forgets it, the image is free.
	e.must(204, "DELETE", "/v1/enroll-rules/"+big["id"].(string), e.admin, nil)
	match = e.must(200, "GET", "/v1/hosts/"+f.host+"/enroll-match", e.admin, nil)
	require.Nil(t, match["enrolled_by_rule"])
	require.Equal(t, rest["id"], match["matching_rule"])

	// Every change is audited.
	audit := e.must(200, "GET", "/v1/audit-events?action=createEnrollRule&outcome=success", e.admin, nil)["items"].([]any)
	require.Len(t, audit, 3)
	require.Equal(t, "enroll-rule/"+big["id"].(string), audit[len(audit)-1].(map[string]any)["target"])
}
