package api_test

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/api"
)

// Paths no operation serves and methods a path does not take answer
// problem documents, like every other error, not the mux's text/plain.
func TestNoRouteIsAProblem(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct {
		name, method, path string
		code               int
		detail, allow      string
	}{
		{"unknown path", "GET", "/v1/nope", 404, `path "/v1/nope" not found`, ""},
		{"unknown root", "GET", "/", 404, `path "/" not found`, ""},
		{"unknown sub-resource", "GET", "/v1/regions/" + missingID + "/nope", 404, `path "/v1/regions/` + missingID + `/nope" not found`, ""},
		{"NUL in an unknown path", "GET", "/v1/no%00pe", 404, `path "/v1/no\x00pe" not found`, ""},
		{"wrong method on a collection", "PUT", "/v1/regions", 405, "method PUT is not allowed on \"/v1/regions\"; allowed: GET, HEAD, POST", "GET, HEAD, POST"},
		{"wrong method on an item", "POST", "/v1/regions/" + missingID, 405, "", "DELETE, GET, HEAD, PATCH"},
		{"wrong method on an action", "GET", "/v1/hosts/" + missingID + "/enroll", 405, "", "POST"},
		// The mux redirects to the cleaned path, which then answers.
		{"unclean path", "GET", "/v1/regions/../nope", 404, `path "/v1/nope" not found`, ""},
		{"unclean path, wrong method", "GET", "/v1//hosts/" + missingID + "/enroll", 405, "", "POST"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := e.with(t)
			r := e.do(c.method, c.path, e.admin, nil)
			typ := api.ProblemNotFound
			if c.code == 405 {
				typ = api.ProblemMethodNotAllowed
			}
			e.problem(r, c.code, typ)
			m := r.json(t)
			require.NotEmpty(t, m["title"], r.String())
			if c.detail != "" {
				var p struct{ Detail string }
				require.NoError(t, json.Unmarshal(r.Body, &p))
				require.Equal(t, c.detail, p.Detail)
			}
			require.Equal(t, c.allow, sortedList(r.Header.Get("Allow")))
		})
	}
}

func sortedList(s string) string {
	if s == "" {
		return ""
	}
	l := strings.Split(s, ", ")
	slices.Sort(l)
	return strings.Join(l, ", ")
}

// Every operation on a resource that does not exist answers a 404 that
// names the kind and the ID asked for (`region "..." not found`), not a
// bare "not found". The operations come from the OpenAPI document, with
// the same well-formed requests as TestTextRefusedEverywhere.
func TestNotFoundNamesWhat(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	doc := e.openAPI()
	named := regexp.MustCompile(`^[a-z][a-z -]* "` + missingID + `" not found$`)
	seen := map[string]bool{}
	for _, c := range textCases(t, doc) {
		if !strings.Contains(c.base.path, missingID) || seen[c.op] {
			continue
		}
		seen[c.op] = true
		t.Run(c.op, func(t *testing.T) {
			e := e.with(t)
			got := e.doRaw(c.base)
			e.problem(got, 404, api.ProblemNotFound)
			var p struct{ Detail string }
			require.NoError(t, json.Unmarshal(got.Body, &p))
			require.Regexp(t, named, p.Detail)
		})
	}
	require.Greater(t, len(seen), 40, "operations on an ID")

	// The kind is the resource's, also through sub-resources and actions.
	for path, want := range map[string]string{
		"/v1/regions/" + missingID:                "region",
		"/v1/alert-rules/" + missingID:            "alert-rule",
		"/v1/placement-groups/" + missingID:       "placement-group",
		"/v1/projects/" + missingID + "/quota":    "project",
		"/v1/hosts/" + missingID + "/boot-events": "host",
		"/v1/tasks/" + missingID:                  "task",
	} {
		got := e.do("GET", path, e.admin, nil)
		e.problem(got, 404, api.ProblemNotFound)
		require.Equal(t, want+` "`+missingID+`" not found`, got.json(t)["detail"], path)
	}
	got := e.do("GET", "/v1/boot/profiles/52:54:00:00:00:99", e.admin, nil)
	e.problem(got, 404, api.ProblemNotFound)
	require.Equal(t, `host with MAC "52:54:00:00:00:99" not found`, got.json(t)["detail"])
}

// A 501 says plainly what is not implemented, not "invalid:".
func TestNotImplementedSaysWhat(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	f := e.fixture("nimpl")
	e.setHostState(f.host, rackcloud.HostAvailable)
	r := e.do("POST", "/v1/hosts/"+f.host+"/deprovision", e.admin, nil)
	e.problem(r, 501, api.ProblemNotImplemented)
	detail := r.json(t)["detail"].(string)
	require.Equal(t, "host.deprovision tasks are not implemented yet: this server runs no worker for them", detail)
	require.NotContains(t, strings.ToLower(detail), "invalid")
}
