package api_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/api"
	"github.com/rackcloud/rackcloud/store"
)

// A guest's console is read from its host: an unknown guest is 404, a
// guest on no host is 409 with why, another project's guest is hidden
// from a member, and a viewer may not read consoles. (The output
// itself is checked against real dockerd and libvirtd in vmctl and the
// lab.)
func TestGuestConsoleRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	tok := e.admin
	p := e.must(201, "POST", "/v1/projects", tok, map[string]any{"name": "con"})
	pid := p["id"].(string)
	e.must(200, "PUT", "/v1/projects/"+pid+"/quota", tok,
		map[string]any{"reserved": map[string]any{"vcpu": 4, "memory_mib": 4096, "disk_gib": 10, "hosts": 0}})
	img := e.must(201, "POST", "/v1/images", tok, map[string]any{"name": "ctr", "url": "http://127.0.0.1/c.tar",
		"checksum": "sha256:" + strings.Repeat("b", 64), "format": "docker-archive"})
	g, err := store.CreateGuest(ctx, e.pool, rackcloud.Guest{Meta: rackcloud.Meta{Name: "unplaced"}, ProjectID: pid, Kind: rackcloud.GuestContainer,
		ImageID: img["id"].(string), Flavor: rackcloud.Resources{CPUCores: 1, MemoryMiB: 64, DiskGiB: 1}})
	require.NoError(t, err)

	e.problem(e.do("GET", "/v1/guests/"+store.NewID()+"/console", tok, nil), 404, api.ProblemNotFound)
	r := e.do("GET", "/v1/guests/"+g.ID+"/console", tok, nil)
	e.problem(r, 409, api.ProblemConflict)
	require.Contains(t, r.String(), "is on no host")
	e.problem(e.do("GET", "/v1/guests/"+g.ID+"/console?bytes=0", tok, nil), 422, api.ProblemValidation)

	other := e.must(201, "POST", "/v1/projects", tok, map[string]any{"name": "con-other"})
	member, _ := e.token("con-member", rackcloud.RoleMember, other["id"].(string))
	e.problem(e.do("GET", "/v1/guests/"+g.ID+"/console", member, nil), 404, api.ProblemNotFound)
	viewer, _ := e.token("con-viewer", rackcloud.RoleViewer, pid)
	e.problem(e.do("GET", "/v1/guests/"+g.ID+"/console", viewer, nil), 403, api.ProblemForbidden)
}
