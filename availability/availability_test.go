package availability_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	dockerclient "github.com/moby/moby/client"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/availability"
	"github.com/rackcloud/rackcloud/lab/dockerd"
	"github.com/rackcloud/rackcloud/lab/guestimg"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/lab/rack"
	"github.com/rackcloud/rackcloud/lab/srvtest"
	"github.com/rackcloud/rackcloud/server"
	"github.com/rackcloud/rackcloud/vmctl"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// client calls a real server's API.
type client struct {
	t     *testing.T
	base  string
	token string
}

func (c client) call(method, path string, body, out any) int {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(c.t, err)
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	require.NoError(c.t, err)
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		c.t.Logf("%s %s: %d %s", method, path, resp.StatusCode, b)
	} else if out != nil {
		require.NoError(c.t, json.Unmarshal(b, out), string(b))
	}
	return resp.StatusCode
}

func (c client) get(path string) string {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.base+path, nil)
	require.NoError(c.t, err)
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

type host struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	State   string `json:"state"`
	Power   string `json:"power"`
	Failure *struct {
		Reason string `json:"reason"`
		Detail string `json:"detail"`
		TaskID string `json:"task_id"`
	} `json:"failure"`
}

type guest struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	State  string `json:"state"`
	HostID string `json:"host_id"`
}

type task struct {
	ID    string `json:"id"`
	State string `json:"state"`
	Error string `json:"error"`
}

func (c client) host(id string) host {
	c.t.Helper()
	var h host
	require.Equal(c.t, 200, c.call(http.MethodGet, "/v1/hosts/"+id, nil, &h))
	return h
}

func (c client) guest(id string) guest {
	c.t.Helper()
	var g guest
	require.Equal(c.t, 200, c.call(http.MethodGet, "/v1/guests/"+id, nil, &g))
	return g
}

// waitTask waits for task id to end and returns it.
func (c client) waitTask(id string, within time.Duration) task {
	c.t.Helper()
	var tk task
	labtest.Eventually(c.t, within, 200*time.Millisecond, "task "+id+" ended", func() (bool, string) {
		c.call(http.MethodGet, "/v1/tasks/"+id, nil, &tk)
		return tk.State == "succeeded" || tk.State == "failed" || tk.State == "canceled", tk.State
	})
	return tk
}

// adopt adopts a dockerd as a docker host with the BMC at bmcAddr.
func (c client) adopt(name string, d *dockerd.Daemon, bmcAddr, user, password string, labels map[string]string) host {
	c.t.Helper()
	var tk task
	require.Equal(c.t, 201, c.call(http.MethodPost, "/v1/hosts", map[string]any{"name": name, "role": "docker", "endpoint": d.Endpoint,
		"resources": map[string]any{"cpu_cores": 0, "memory_mib": 0, "disk_gib": 20}, "labels": labels,
		"bmc": map[string]any{"address": bmcAddr, "protocol": "ipmi", "username": user, "password": password}}, nil))
	var page struct{ Items []host }
	require.Equal(c.t, 200, c.call(http.MethodGet, "/v1/hosts?limit=100", nil, &page))
	for _, h := range page.Items {
		if h.Name == name {
			labtest.Eventually(c.t, time.Minute, 200*time.Millisecond, name+" ready", func() (bool, string) {
				hh := c.host(h.ID)
				return hh.State == "ready", fmt.Sprintf("%+v", hh)
			})
			return c.host(h.ID)
		}
	}
	c.t.Fatalf("host %s not listed (%+v)", name, tk)
	return host{}
}

// webhook posts one Alertmanager notification with a firing alert.
func (c client) webhook(alertname, hostName string) []struct {
	Alert, Host, Action string
	TaskID              string `json:"task_id"`
	Reason              string
} {
	c.t.Helper()
	var out struct {
		Actions []struct {
			Alert, Host, Action string
			TaskID              string `json:"task_id"`
			Reason              string
		} `json:"actions"`
	}
	body := map[string]any{"version": "4", "status": "firing", "receiver": "rackcloud", "groupKey": "{}:{alertname=\"" + alertname + "\"}",
		"alerts": []map[string]any{{"status": "firing", "labels": map[string]string{"alertname": alertname, "host": hostName, "severity": "critical"},
			"annotations": map[string]string{"summary": "down"}, "startsAt": time.Now().UTC().Format(time.RFC3339), "fingerprint": "0123abcd"}}}
	require.Equal(c.t, 200, c.call(http.MethodPost, "/v1/availability/webhook", body, &out))
	require.Len(c.t, out.Actions, 1)
	return out.Actions
}

func startDockerd(t *testing.T, ctx context.Context, prefix string) *dockerd.Daemon {
	t.Helper()
	dir, err := os.MkdirTemp("", "rcav")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	d, err := dockerd.Start(ctx, dockerd.Config{Dir: dir, Netns: labtest.Net(t, prefix, "10.67.0.1/24")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = d.Stop() })
	return d
}

// closedUDP returns a loopback UDP address where nothing listens.
func closedUDP(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := c.LocalAddr().String()
	require.NoError(t, c.Close())
	return addr
}

// The availability controller on a real server, real Postgres, real
// dockerds (adopted hosts) and real ipmi_sim BMCs: a host whose daemon
// died is confirmed dead, fenced through its BMC (powered off, read
// back), failed (fenced), and its HA guest is recreated on another host
// while its HA-none guest stays, failed; a second alert for it is
// ignored; an alert for a live host is a false alarm that changes
// nothing; a host whose BMC cannot be reached is not fenced, its guest
// is not restarted, and the controller's gauge names it. Every action is
// audited as the controller.
func TestFenceDeadHostRestartsGuestsElsewhere(t *testing.T) {
	labtest.Need(t, dockerd.Binary, "nsenter", "ipmi_sim", "ipmitool")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	r, err := rack.Start(ctx, rack.Config{Nodes: 3, Virtual: true, Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Stop()) })
	for _, n := range r.Nodes {
		require.NoError(t, n.PowerOn())
	}
	d1 := startDockerd(t, ctx, "rcav1")
	d2 := startDockerd(t, ctx, "rcav2")
	d3 := startDockerd(t, ctx, "rcav3")

	srv := srvtest.Run(t, ctx, server.Config{BMCPollInterval: -1,
		GuestDrivers: map[rackcloud.GuestKind]vmctl.Driver{rackcloud.GuestContainer: &vmctl.Docker{}},
		Availability: availability.Config{SweepInterval: 300 * time.Millisecond, RetryAfter: time.Second, PowerWait: 10 * time.Second,
			ReachTimeout: 3 * time.Second}})
	c := client{t: t, base: srv.URL, token: srv.Token}

	path, sum, size, err := guestimg.Container("")
	require.NoError(t, err)
	var im, proj struct{ ID string }
	require.Equal(t, 201, c.call(http.MethodPost, "/v1/images", map[string]any{"name": "busybox", "url": "file://" + path,
		"checksum": sum, "format": "docker-archive", "size": size}, &im))
	require.Equal(t, 201, c.call(http.MethodPost, "/v1/projects", map[string]any{"name": "web"}, &proj))
	require.Equal(t, 200, c.call(http.MethodPut, "/v1/projects/"+proj.ID+"/quota",
		map[string]any{"reserved": map[string]any{"vcpu": 8, "memory_mib": 4096, "disk_gib": 20, "hosts": 0}}, nil))
	create := func(name, ha string, constraints ...string) guest {
		var tk task
		require.Equal(t, 202, c.call(http.MethodPost, "/v1/guests", map[string]any{"name": name, "project_id": proj.ID, "kind": "container",
			"image_id": im.ID, "ha": ha, "constraints": constraints, "flavor": map[string]any{"vcpu": 1, "memory_mib": 64, "disk_gib": 1}}, &tk))
		require.Equal(t, "succeeded", c.waitTask(tk.ID, 2*time.Minute).State)
		var page struct{ Items []guest }
		require.Equal(t, 200, c.call(http.MethodGet, "/v1/guests?limit=100", nil, &page))
		for _, g := range page.Items {
			if g.Name == name {
				return g
			}
		}
		t.Fatalf("guest %s not listed", name)
		return guest{}
	}

	// dk1 runs web (restart) and scratch (none); dk3, whose BMC does not
	// answer, runs w3 (restart); dk2 comes last, with room for web.
	h1 := c.adopt("dk1", d1, r.Nodes[0].IPMI.String(), r.User(), r.Password(), nil)
	web := create("web", "restart", "!far")
	scratch := create("scratch", "none")
	require.Equal(t, h1.ID, web.HostID)
	require.Equal(t, h1.ID, scratch.HostID)
	h3 := c.adopt("dk3", d3, closedUDP(t), r.User(), r.Password(), map[string]string{"far": "true"})
	w3 := create("w3", "restart", "far")
	require.Equal(t, h3.ID, w3.HostID)
	h2 := c.adopt("dk2", d2, r.Nodes[1].IPMI.String(), r.User(), r.Password(), nil)

	// A false alarm: dk2's daemon answers, nothing happens to it.
	acts := c.webhook("HostDown", "dk2")
	require.Equal(t, "fence", acts[0].Action, "%+v", acts[0])
	tk := c.waitTask(acts[0].TaskID, time.Minute)
	require.Equal(t, "succeeded", tk.State, tk.Error)
	require.Equal(t, "ready", c.host(h2.ID).State)
	require.Equal(t, rackcloud.PowerOn, r.Nodes[1].Power(), "a live host is not powered off")
	require.Contains(t, c.get("/v1/tasks/"+acts[0].TaskID), "its daemon answers")

	// Alerts that ask for nothing are ignored, with the reason.
	require.Equal(t, "ignored", c.webhook("TaskFailures", "dk1")[0].Action)

	// dk1 dies: its daemon is gone (its BMC still says on).
	require.NoError(t, d1.Stop())
	acts = c.webhook("HostDown", "dk1")
	require.Equal(t, "fence", acts[0].Action, "%+v", acts[0])
	tk = c.waitTask(acts[0].TaskID, 2*time.Minute)
	require.Equal(t, "succeeded", tk.State, tk.Error)
	require.Equal(t, rackcloud.PowerOff, r.Nodes[0].Power(), "fenced through its BMC")
	h := c.host(h1.ID)
	require.Equal(t, "failed", h.State)
	require.Equal(t, "off", h.Power)
	require.NotNil(t, h.Failure)
	require.Equal(t, "fenced", h.Failure.Reason)
	require.Equal(t, acts[0].TaskID, h.Failure.TaskID)
	labtest.Eventually(t, 2*time.Minute, 200*time.Millisecond, "web running on dk2", func() (bool, string) {
		g := c.guest(web.ID)
		return g.State == "running" && g.HostID == h2.ID, fmt.Sprintf("%+v\n%s", g, c.get("/v1/tasks?limit=20"))
	})
	if !slices.Contains(containerNames(t, ctx, d2), "rc-"+web.ID) {
		var page struct{ Items []task }
		c.call(http.MethodGet, "/v1/tasks?kind=guest.recreate", nil, &page)
		for _, tk := range page.Items {
			t.Logf("recreate: %s", c.get("/v1/tasks/"+tk.ID))
		}
		t.Logf("web: %s", c.get("/v1/guests/"+web.ID))
		t.Logf("web events: %s", c.get("/v1/guests/"+web.ID+"/events"))
	}
	require.Contains(t, containerNames(t, ctx, d2), "rc-"+web.ID, "web's container runs on dk2's daemon (d3 has %v)", containerNames(t, ctx, d3))
	g := c.guest(scratch.ID)
	require.Equal(t, "failed", g.State, "an HA-none guest stays, failed")
	require.Equal(t, h1.ID, g.HostID)

	// A second alert for the fenced host is ignored.
	acts = c.webhook("HostDown", "dk1")
	require.Equal(t, "ignored", acts[0].Action)
	require.Contains(t, acts[0].Reason, "fenced already")

	// dk3 dies too, but its BMC does not answer: not fenced, w3 not
	// restarted (dk3 may still run it), and the gauge says so.
	require.NoError(t, d3.Stop())
	acts = c.webhook("HostDown", "dk3")
	require.Equal(t, "fence", acts[0].Action, "%+v", acts[0])
	tk = c.waitTask(acts[0].TaskID, 3*time.Minute)
	require.Equal(t, "failed", tk.State)
	require.Contains(t, tk.Error, "not fenced")
	require.Equal(t, "ready", c.host(h3.ID).State)
	g = c.guest(w3.ID)
	require.Equal(t, h3.ID, g.HostID, "w3 is not restarted elsewhere")
	labtest.Eventually(t, 30*time.Second, 200*time.Millisecond, "the unfenced gauge", func() (bool, string) {
		m := c.get("/metrics")
		return strings.Contains(m, `rackcloud_availability_unfenced{host="dk3",host_id="`+h3.ID+`"} 1`), grep(m, "rackcloud_availability")
	})

	// Every action is audited as the controller.
	var audit struct {
		Items []struct{ Actor, Action, Outcome string }
	}
	require.Equal(t, 200, c.call(http.MethodGet, "/v1/audit-events?limit=500", nil, &audit))
	byController := map[string]bool{}
	for _, e := range audit.Items {
		if e.Actor == availability.Actor {
			byController[e.Action+" "+e.Outcome] = true
		}
	}
	for _, a := range []string{"fenceHost success", "failHost success", "evacuateHost success", "fenceHost failure"} {
		require.True(t, byController[a], "audited as the controller: %s (%v)", a, byController)
	}
}

// containerNames lists the containers on a daemon.
func containerNames(t *testing.T, ctx context.Context, d *dockerd.Daemon) []string {
	t.Helper()
	cl, err := dockerclient.New(dockerclient.WithHost(d.Endpoint), dockerclient.WithAPIVersionNegotiation())
	require.NoError(t, err)
	defer cl.Close()
	res, err := cl.ContainerList(ctx, dockerclient.ContainerListOptions{All: true})
	require.NoError(t, err)
	var out []string
	for _, ct := range res.Items {
		out = append(out, strings.TrimPrefix(ct.Names[0], "/"))
	}
	return out
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
