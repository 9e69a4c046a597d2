package lab_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/rack"
)

// A bare-metal guest end to end: a bm server is onboarded to ready by its
// enroll rule; a bm guest created through the API takes it, the
// provisioner installs the guest's image on it (PXE into the installer
// through the IPMI BMC, the agent writes and reads back the image, the
// disk boots) and the guest runs; stop and start are the BMC's power;
// delete wipes the host and it is available again. Bad input on the way:
// an image not made for bm hosts is refused, and a second bm guest finds
// no host and says why.
func TestBareMetalGuest(t *testing.T) {
	l, token := upLabWith(t, lab.Config{Netns: "rctest-bmg", Gateway: netip.MustParsePrefix("10.83.0.1/24"), Nodes: 1,
		Roles: []rackcloud.HostRole{rackcloud.RoleBareMetal}, Onboard: true})
	a := apiClient{t: t, base: l.APIURL, token: token}
	n := l.Rack.Nodes[0]
	start := time.Now()
	h := a.waitState(n, "ready", 6*time.Minute)
	t.Logf("%s (%s) ready after %s", n.Name, n.Firmware, time.Since(start).Round(time.Second))

	// The tenant's image: the lab's bm image registered again under the
	// tenant's name (same bytes, its own record), for role bm.
	var host struct {
		ID       string `json:"id"`
		URL      string `json:"url"`
		Checksum string `json:"checksum"`
		Size     int64  `json:"size"`
		Format   string `json:"format"`
	}
	var images struct {
		Items []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"items"`
	}
	a.call(http.MethodGet, "/v1/images?limit=1000", nil, &images)
	for _, im := range images.Items {
		if im.Name == lab.ImageName(rackcloud.RoleBareMetal) {
			require.Equal(t, 200, a.call(http.MethodGet, "/v1/images/"+im.ID, nil, &host))
		}
	}
	require.NotEmpty(t, host.ID)
	var tenant, notBM struct {
		ID string `json:"id"`
	}
	require.Equal(t, 201, a.call(http.MethodPost, "/v1/images", map[string]any{"name": "tenant-bm", "url": host.URL,
		"checksum": host.Checksum, "size": host.Size, "format": host.Format, "roles": []string{"bm"}}, &tenant))
	require.Equal(t, 201, a.call(http.MethodPost, "/v1/images", map[string]any{"name": "tenant-kvm", "url": host.URL,
		"checksum": host.Checksum, "size": host.Size, "format": host.Format, "roles": []string{"kvm"}}, &notBM))
	var proj struct {
		ID string `json:"id"`
	}
	require.Equal(t, 201, a.call(http.MethodPost, "/v1/projects", map[string]any{"name": "metal"}, &proj))
	require.Equal(t, 200, a.call(http.MethodPut, "/v1/projects/"+proj.ID+"/quota",
		map[string]any{"reserved": map[string]any{"vcpu": 4, "memory_mib": 1024, "disk_gib": 4, "hosts": 2}}, nil))
	guest := func(name, imageID string) map[string]any {
		return map[string]any{"project_id": proj.ID, "name": name, "kind": "bm", "image_id": imageID,
			"flavor": map[string]any{"vcpu": 1, "memory_mib": 64, "disk_gib": 1}}
	}
	require.Equal(t, 422, a.call(http.MethodPost, "/v1/guests", guest("wrong", notBM.ID), nil), "an image for kvm hosts is refused")

	// The guest takes the host; its image is installed and boots.
	var created struct {
		ID string `json:"id"` // the guest.create task
	}
	start = time.Now()
	require.Equal(t, 202, a.call(http.MethodPost, "/v1/guests", guest("metal1", tenant.ID), &created))
	inst := a.waitState(n, "provisioning", 3*time.Minute)
	require.Equal(t, h.ID, inst.ID)
	g := a.waitGuest("metal1", "running", 8*time.Minute)
	t.Logf("bm guest running after %s: %s", time.Since(start).Round(time.Second), g.Placement)
	require.Equal(t, h.ID, g.HostID)
	h = a.waitState(n, "ready", time.Minute)
	require.Equal(t, "bm", h.Role, "the host keeps its role")
	require.Equal(t, rackcloud.PowerOn, n.Power())
	written := installsWritten(a, h.ID)
	require.Len(t, written, 2, "the host's own install, then the guest's")
	for _, w := range written {
		require.Equal(t, host.Checksum, w.SHA256, "the disk read back the image")
	}
	var task struct {
		Steps []struct {
			Name   string          `json:"name"`
			State  string          `json:"state"`
			Output json.RawMessage `json:"output"`
		} `json:"steps"`
	}
	require.Equal(t, 200, a.call(http.MethodGet, "/v1/tasks/"+created.ID, nil, &task))
	for _, s := range task.Steps {
		require.Equal(t, "succeeded", s.State, "%s: %s", s.Name, s.Output)
	}

	// A second bm guest: the only bm host is taken.
	require.Equal(t, 202, a.call(http.MethodPost, "/v1/guests", guest("metal2", tenant.ID), nil))
	var refused labGuest
	labtest.Eventually(t, 2*time.Minute, time.Second, "metal2 refused", func() (bool, string) {
		refused = findGuest(a, "metal2")
		return refused.State == "failed", fmt.Sprintf("%+v", refused)
	})
	require.Contains(t, refused.StateReason+refused.Placement, "no host fits")

	// Stop and start through the BMC.
	require.Equal(t, 202, a.call(http.MethodPost, "/v1/guests/"+g.ID+"/stop", nil, nil))
	a.waitGuest("metal1", "stopped", 3*time.Minute)
	require.Equal(t, rackcloud.PowerOff, n.Power())
	require.Equal(t, 202, a.call(http.MethodPost, "/v1/guests/"+g.ID+"/start", nil, nil))
	a.waitGuest("metal1", "running", 3*time.Minute)
	require.Equal(t, rackcloud.PowerOn, n.Power())

	// Delete: powered off, wiped, available; the claim is gone.
	require.Equal(t, 202, a.call(http.MethodDelete, "/v1/guests/"+refused.ID, nil, nil))
	require.Equal(t, 202, a.call(http.MethodDelete, "/v1/guests/"+g.ID, nil, nil))
	a.waitGone(g.ID, 6*time.Minute)
	h = a.waitState(n, "available", time.Minute)
	require.Empty(t, h.Role, "a wiped host has no role")
	require.Equal(t, rackcloud.PowerOff, n.Power())
	head := diskHead(t, n)
	require.Equal(t, make([]byte, len(head)), head, "the boot sector and partition table are gone")
}

// installsWritten are the host's install reports that say the image was
// written, oldest first.
func installsWritten(a apiClient, hostID string) []rackcloud.InstallReport {
	var evs struct {
		Items []struct {
			Kind string          `json:"kind"`
			Data json.RawMessage `json:"data"`
		} `json:"items"`
	}
	require.Equal(a.t, 200, a.call(http.MethodGet, "/v1/hosts/"+hostID+"/boot-events?limit=1000", nil, &evs))
	var out []rackcloud.InstallReport
	for _, e := range evs.Items {
		var rep rackcloud.InstallReport
		if e.Kind == "install" && json.Unmarshal(e.Data, &rep) == nil && rep.Phase == rackcloud.InstallWritten {
			out = append(out, rep)
		}
	}
	return out
}

// findGuest returns the guest named name (zero when there is none).
func findGuest(a apiClient, name string) labGuest {
	var page struct {
		Items []labGuest `json:"items"`
	}
	require.Equal(a.t, 200, a.call(http.MethodGet, "/v1/guests?limit=1000", nil, &page))
	for _, g := range page.Items {
		if g.Name == name {
			return g
		}
	}
	return labGuest{}
}

// diskHead reads the first MiB of node n's first disk.
func diskHead(t *testing.T, n *rack.Node) []byte {
	t.Helper()
	disk, err := os.Open(filepath.Join(n.Dir, "disk0.img"))
	require.NoError(t, err)
	defer disk.Close()
	head := make([]byte, 1<<20)
	_, err = io.ReadFull(disk, head)
	require.NoError(t, err)
	return head
}
