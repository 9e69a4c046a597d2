package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dockerclient "github.com/moby/moby/client"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/dockerd"
	"github.com/rackcloud/rackcloud/lab/guestimg"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/srvtest"
	"github.com/rackcloud/rackcloud/lab/virtd"
	"github.com/rackcloud/rackcloud/server"
	"github.com/rackcloud/rackcloud/vmctl"
)

// The issue's "done when": `rackcloud guest create --kind container ...
// --wait` and `--kind vm` show each step and end with a running guest on
// an adopted host. The CLI's own code runs against a real server (API,
// task engine, placement, vmctl) on a real Postgres, with a real dockerd
// and a real libvirtd (QEMU, TCG) adopted through the CLI; the container
// prints its marker in its logs and the VM on its serial console.
func TestGuestCreateWaitShowsEachStepOnAdoptedHosts(t *testing.T) {
	labtest.Need(t, dockerd.Binary, "nsenter", "libvirtd", "qemu-system-x86_64")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	dk, err := dockerd.Start(ctx, dockerd.Config{Dir: t.TempDir(), Netns: labtest.Net(t, "rce2d", "10.63.0.1/24")})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, dk.Stop()) })
	lv, err := virtd.Start(ctx, virtd.Config{Dir: filepath.Join(t.TempDir(), "virtd"), Netns: labtest.Net(t, "rce2v", "10.65.0.1/24")})
	require.NoError(t, err)
	t.Cleanup(lv.Stop)

	// The real server; QEMU runs its guests under TCG here (this
	// machine's /dev/kvm cannot run them).
	lvDriver := &vmctl.Libvirt{DomainType: "qemu"}
	defer lvDriver.Close()
	srv := srvtest.Run(t, ctx, server.Config{
		GuestDrivers: map[rackcloud.GuestKind]vmctl.Driver{rackcloud.GuestVM: lvDriver, rackcloud.GuestContainer: &vmctl.Docker{}}})
	t.Setenv("RACKCLOUD_SERVER", srv.URL)
	t.Setenv("RACKCLOUD_TOKEN", srv.Token)

	_, progress, err := run(t, "host", "adopt", "--role", "docker", "--endpoint", dk.Endpoint, "--name", "dk1", "--disk", "20", "--wait")
	require.NoError(t, err, progress)
	_, progress, err = run(t, "host", "adopt", "--role", "kvm", "--endpoint", lv.URI(), "--name", "kvm1", "--wait")
	require.NoError(t, err, progress)

	cpath, csum, csize, err := guestimg.Container("")
	require.NoError(t, err)
	vpath, vsum, vsize, err := guestimg.VM(filepath.Join(os.TempDir(), "rackcloud-guestimg"))
	require.NoError(t, err)
	mustRun(t, "image", "create", "busybox", "--url", "file://"+cpath, "--checksum", csum, "--format", "docker-archive", "--size", fmt.Sprint(csize))
	mustRun(t, "image", "create", "tiny-vm", "--url", "file://"+vpath, "--checksum", vsum, "--format", "raw", "--size", fmt.Sprint(vsize))
	mustRun(t, "project", "create", "web")
	mustRun(t, "project", "quota", "web", "--vcpu", "4", "--memory", "4096", "--disk", "40")

	// A guest no host can take: the refusal, explained, and its undo.
	_, progress, err = run(t, "guest", "create", "huge", "--kind", "container", "--project", "web", "--image", "busybox",
		"--vcpu", "1", "--memory", "128", "--disk", "30", "--wait")
	require.ErrorContains(t, err, "no host fits")
	require.Regexp(t, regexp.MustCompile(`(?s)✗ step 1 place: .*no host fits.*undoing the steps that ran.*↩ undid step 1 place.*failed`), progress)
	mustRun(t, "guest", "delete", "huge", "--wait")

	for _, tc := range []struct{ kind, name, image, host string }{
		{"container", "hello", "busybox", "dk1"},
		{"vm", "tiny", "tiny-vm", "kvm1"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			out, progress, err := run(t, "guest", "create", tc.name, "--kind", tc.kind, "--project", "web", "--image", tc.image,
				"--vcpu", "1", "--memory", "128", "--disk", "1", "--wait")
			t.Logf("rackcloud guest create %s --kind %s --wait:\n%s%s", tc.name, tc.kind, out, progress)
			require.NoError(t, err)
			require.Contains(t, out, "guest.create")
			// Each step, in order, then the end.
			require.Regexp(t, regexp.MustCompile(`(?s)queued.*started.*✓ step 1 place.*✓ step 2 disk.*✓ step 3 configure.*✓ step 4 start.*succeeded in`), progress)

			var g struct {
				ID       string `json:"id"`
				State    string `json:"state"`
				HostID   string `json:"host_id"`
				Observed struct {
					State string `json:"state"`
				} `json:"observed"`
			}
			require.NoError(t, json.Unmarshal([]byte(mustRun(t, "guest", "get", tc.name, "-o", "json")), &g))
			require.Equal(t, "running", g.State)
			require.Equal(t, "running", g.Observed.State, "the driver saw it run")
			var h struct{ Name string }
			require.NoError(t, json.Unmarshal([]byte(mustRun(t, "host", "get", g.HostID, "-o", "json")), &h))
			require.Equal(t, tc.host, h.Name, "on the adopted host of its kind")

			// And it really runs.
			marker, logs := guestimg.ContainerMarker, func() string { return containerLog(t, ctx, dk.Endpoint, "rc-"+g.ID) }
			if tc.kind == "vm" {
				marker, logs = guestimg.VMMarker, func() string {
					l, err := lvDriver.ConsoleLog(ctx, vmctl.Target{HostID: g.HostID, Role: rackcloud.RoleKVM, Endpoint: lv.URI()},
						vmctl.Spec{GuestID: g.ID, Name: tc.name})
					require.NoError(t, err)
					return l
				}
			}
			labtest.Eventually(t, 3*time.Minute, 500*time.Millisecond, tc.name+"'s marker", func() (bool, string) {
				l := logs()
				return strings.Contains(l, marker), l
			})
		})
	}

	// Maintenance drains dk1; evacuating it moves its container to a
	// second adopted dockerd, and the drain ends in maintenance.
	dk2, err := dockerd.Start(ctx, dockerd.Config{Dir: t.TempDir(), Netns: labtest.Net(t, "rce2d", "10.63.0.1/24")})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, dk2.Stop()) })
	_, progress, err = run(t, "host", "adopt", "--role", "docker", "--endpoint", dk2.Endpoint, "--name", "dk2", "--disk", "20", "--wait")
	require.NoError(t, err, progress)
	_, _, err = run(t, "host", "evacuate", "dk1")
	require.ErrorContains(t, err, "put it in maintenance first")
	mustRun(t, "host", "maintenance", "dk1", "on", "--reason", "e2e", "--no-evacuate")
	labtest.Eventually(t, 30*time.Second, 100*time.Millisecond, "dk1 draining", func() (bool, string) {
		s := hostState(t, "dk1")
		return s == "draining", s
	})
	out, progress, err := run(t, "host", "evacuate", "dk1", "--wait")
	t.Logf("rackcloud host evacuate dk1 --wait:\n%s%s", out, progress)
	require.NoError(t, err)
	require.Contains(t, out, "host.evacuate")
	require.Contains(t, out, "host dk1: 1 moved, 0 failed, 0 left")
	require.Regexp(t, `hello +moved +migrate`, out)
	require.Regexp(t, regexp.MustCompile(`(?s)✓ step 1 check.*✓ step 2 evacuate.*✓ step 3 report.*succeeded in`), progress)
	var g struct {
		ID     string `json:"id"`
		State  string `json:"state"`
		HostID string `json:"host_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, "guest", "get", "hello", "-o", "json")), &g))
	require.Equal(t, "running", g.State)
	labtest.Eventually(t, time.Minute, 200*time.Millisecond, "hello's marker on dk2", func() (bool, string) {
		l := containerLog(t, ctx, dk2.Endpoint, "rc-"+g.ID)
		return strings.Contains(l, guestimg.ContainerMarker), l
	})
	labtest.Eventually(t, time.Minute, 200*time.Millisecond, "dk1 in maintenance", func() (bool, string) {
		s := hostState(t, "dk1")
		return s == "maintenance", s
	})

	// A drain moves the guests off by itself: dk1 back in service, dk2
	// into maintenance, and hello runs on dk1 again.
	mustRun(t, "host", "maintenance", "dk1", "off", "--wait")
	out, progress, err = run(t, "host", "maintenance", "dk2", "on", "--reason", "e2e", "--wait")
	t.Logf("rackcloud host maintenance dk2 on --wait:\n%s%s", out, progress)
	require.NoError(t, err)
	require.Regexp(t, regexp.MustCompile(`(?s)✓ step 1 draining.*✓ step 2 evacuate.*✓ step 3 await-guests.*✓ step 4 maintenance.*succeeded in`), progress)
	require.Equal(t, "maintenance", hostState(t, "dk2"))
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, "guest", "get", "hello", "-o", "json")), &g))
	require.Equal(t, "running", g.State)
	labtest.Eventually(t, time.Minute, 200*time.Millisecond, "hello's marker on dk1", func() (bool, string) {
		l := containerLog(t, ctx, dk.Endpoint, "rc-"+g.ID)
		return strings.Contains(l, guestimg.ContainerMarker), l
	})
}

// hostState is a host's lifecycle state as the CLI shows it.
func hostState(t *testing.T, name string) string {
	t.Helper()
	var h struct {
		State string `json:"state"`
	}
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, "host", "get", name, "-o", "json")), &h))
	return h.State
}

// containerLog is what a container printed.
func containerLog(t *testing.T, ctx context.Context, endpoint, name string) string {
	t.Helper()
	c, err := dockerclient.New(dockerclient.WithHost(endpoint), dockerclient.WithAPIVersionNegotiation())
	require.NoError(t, err)
	defer c.Close()
	r, err := c.ContainerLogs(ctx, name, dockerclient.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	require.NoError(t, err)
	defer r.Close()
	b, _ := io.ReadAll(r)
	return string(b)
}
