package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab"
	"github.com/rackcloud/rackcloud/lab/guestimg"
	"github.com/rackcloud/rackcloud/lab/hostimg"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/rack"
)

// apiClient is a test's handle on the lab's API.
type apiClient struct {
	t     *testing.T
	base  string
	token string
}

func (a apiClient) call(method, path string, body any, out any) int {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(a.t, err)
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	require.NoError(a.t, err)
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(a.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		require.NoError(a.t, json.Unmarshal(b, out), string(b))
	}
	if resp.StatusCode/100 != 2 {
		a.t.Logf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode
}

// deprovision deprovisions node n's host and waits until its task has
// succeeded, not only until the host reads available: the task still
// holds the host for its last statement, and a provision sent in that
// window is (rightly) a 409.
func (a apiClient) deprovision(n *rack.Node, hostID string, within time.Duration) labHost {
	a.t.Helper()
	var task struct {
		ID string `json:"id"`
	}
	require.Equal(a.t, 202, a.call(http.MethodPost, "/v1/hosts/"+hostID+"/deprovision", nil, &task))
	h := a.waitState(n, "available", within)
	a.waitTask(task.ID, within)
	return h
}

// waitTask waits for task id to succeed, failing at once if it fails.
func (a apiClient) waitTask(id string, within time.Duration) {
	a.t.Helper()
	labtest.Eventually(a.t, within, 200*time.Millisecond, "task "+id+" succeeded", func() (bool, string) {
		var tk struct {
			State string `json:"state"`
			Error string `json:"error"`
		}
		a.call(http.MethodGet, "/v1/tasks/"+id, nil, &tk)
		if tk.State == "failed" || tk.State == "canceled" {
			a.t.Fatalf("task %s %s: %s", id, tk.State, tk.Error)
		}
		return tk.State == "succeeded", tk.State
	})
}

type labHost struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	State    string `json:"state"`
	Role     string `json:"role"`
	Version  int64  `json:"version"`
	Endpoint string `json:"endpoint"`
	Failure  *struct {
		Reason string `json:"reason"`
		Step   string `json:"step"`
		Detail string `json:"detail"`
		TaskID string `json:"task_id"`
	} `json:"failure"`
	Inventory     *rackcloud.Inventory `json:"inventory"`
	LastHeartbeat *time.Time           `json:"last_heartbeat"`
}

func (a apiClient) host(mac string) (labHost, bool) {
	var page struct {
		Items []labHost `json:"items"`
	}
	a.call(http.MethodGet, "/v1/hosts?mac="+mac, nil, &page)
	if len(page.Items) == 0 {
		return labHost{}, false
	}
	return page.Items[0], true
}

// waitState waits for the host of node n to reach state (failing at once
// if it fails when that is not the state waited for; a failure of a task
// in ignore is an earlier one, still shown until the retry starts).
func (a apiClient) waitState(n *rack.Node, state string, within time.Duration, ignore ...string) labHost {
	a.t.Helper()
	var h labHost
	labtest.Eventually(a.t, within, time.Second, n.Name+" "+state, func() (bool, string) {
		var ok bool
		h, ok = a.host(n.MAC.String())
		if ok && state != "failed" && h.Failure != nil && !slices.Contains(ignore, h.Failure.TaskID) {
			a.t.Fatalf("%s failed: %+v\nconsole:\n%s", n.Name, *h.Failure, console(n))
		}
		return ok && h.State == state, fmt.Sprintf("%+v\nconsole:\n%s", h, console(n))
	})
	return h
}

// Rack to ready for bare metal (make run's path, on a BIOS and a UEFI
// server): the lab builds the bm image, serves it and writes an enroll
// rule per server; powered on, each is discovered, inspected, matched by
// its rule, installed (the installer streams the image, reads it back and
// writes the host config), boots its disk and calls in with its host
// token: ready. Then the faults: an image whose checksum is wrong fails
// the install with checksum_mismatch; the image fixed, retry is ready.
func TestRackToReadyBareMetal(t *testing.T) {
	l, token := upLabWith(t, lab.Config{Netns: "rctest-prov", Gateway: netip.MustParsePrefix("10.79.0.1/24"), Nodes: 2,
		Roles: []rackcloud.HostRole{rackcloud.RoleBareMetal, rackcloud.RoleBareMetal}, Onboard: true})
	a := apiClient{t: t, base: l.APIURL, token: token}
	start := time.Now()
	for _, n := range l.Rack.Nodes {
		h := a.waitState(n, "ready", 6*time.Minute)
		t.Logf("%s (%s) ready after %s", n.Name, n.Firmware, time.Since(start).Round(time.Second))
		require.Equal(t, "bm", h.Role)
		require.NotNil(t, h.Inventory)
		require.NotNil(t, h.LastHeartbeat, "its agent called in")
		var match struct {
			EnrolledBy string `json:"enrolled_by_rule"`
		}
		require.Equal(t, 200, a.call(http.MethodGet, "/v1/hosts/"+h.ID+"/enroll-match", nil, &match))
		require.NotEmpty(t, match.EnrolledBy, "its rule matched")
	}

	// Faults on node 1: deprovision (available again, not re-installed by
	// its rule), a wrong checksum, then the fixed image and retry.
	n := l.Rack.Nodes[0]
	h, _ := a.host(n.MAC.String())
	a.deprovision(n, h.ID, 4*time.Minute)
	var images struct {
		Items []struct {
			ID       string `json:"id"`
			Name     string `json:"name"`
			Checksum string `json:"checksum"`
			Version  int64  `json:"version"`
		} `json:"items"`
	}
	a.call(http.MethodGet, "/v1/images", nil, &images)
	var imageID, good string
	var version int64
	for _, im := range images.Items {
		if im.Name == lab.ImageName(rackcloud.RoleBareMetal) {
			imageID, good, version = im.ID, im.Checksum, im.Version
		}
	}
	require.NotEmpty(t, imageID)
	bad := "sha256:" + strings.Repeat("0", 64)
	patch := func(sum string) {
		req, err := http.NewRequest(http.MethodPatch, l.APIURL+"/v1/images/"+imageID, strings.NewReader(`{"checksum":"`+sum+`"}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("If-Match", fmt.Sprintf(`"%d"`, version))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
		version++
	}
	patch(bad)
	require.Equal(t, 202, a.call(http.MethodPost, "/v1/hosts/"+h.ID+"/provision", map[string]any{"role": "bm", "image_id": imageID}, nil))
	h = a.waitState(n, "failed", 4*time.Minute)
	require.Equal(t, "checksum_mismatch", h.Failure.Reason, "%+v", h.Failure)
	require.Equal(t, "await-install", h.Failure.Step)
	require.Contains(t, h.Failure.Detail, good, "the checksum read back is the real image's")
	patch(good)
	require.Equal(t, 202, a.call(http.MethodPost, "/v1/hosts/"+h.ID+"/retry", nil, nil))
	a.waitState(n, "ready", 4*time.Minute, h.Failure.TaskID)

	// A download cut in the middle: node 2 (UEFI) is installed from a
	// server on the provisioning network that hangs up 40% into the first
	// download; the installer resumes with Range and reads back the same
	// sha256.
	n2 := l.Rack.Nodes[1]
	h2, _ := a.host(n2.MAC.String())
	a.deprovision(n2, h2.ID, 4*time.Minute)
	flakyURL := serveFlaky(t, l, filepath.Join(l.Dir, "boot", "files", "images"))
	var flaky struct {
		ID string `json:"id"`
	}
	var size int64
	for _, im := range images.Items {
		if im.ID == imageID {
			var full struct {
				Size int64 `json:"size"`
			}
			a.call(http.MethodGet, "/v1/images/"+im.ID, nil, &full)
			size = full.Size
		}
	}
	require.Equal(t, 201, a.call(http.MethodPost, "/v1/images", map[string]any{"name": "flaky-bm", "url": flakyURL, "checksum": good,
		"size": size, "format": "raw+zstd", "roles": []string{"bm"}}, &flaky))
	require.Equal(t, 202, a.call(http.MethodPost, "/v1/hosts/"+h2.ID+"/provision", map[string]any{"role": "bm", "image_id": flaky.ID}, nil))
	a.waitState(n2, "ready", 4*time.Minute)
	var evs struct {
		Items []struct {
			Kind string          `json:"kind"`
			Data json.RawMessage `json:"data"`
		} `json:"items"`
	}
	a.call(http.MethodGet, "/v1/hosts/"+h2.ID+"/boot-events?limit=1000", nil, &evs)
	var written *rackcloud.InstallReport
	for _, e := range evs.Items {
		var rep rackcloud.InstallReport
		if e.Kind == "install" && json.Unmarshal(e.Data, &rep) == nil && rep.Phase == rackcloud.InstallWritten {
			written = &rep
		}
	}
	require.NotNil(t, written, "the installer said it wrote the image")
	require.GreaterOrEqual(t, written.Resumes, 1, "the cut download was resumed")
	require.Equal(t, good, written.SHA256, "and the disk reads back the image's sha256")
}

// serveFlaky serves the files of dir on the lab's provisioning network
// (port 18080 of its gateway) and hangs up the first download 40% in,
// after promising the whole file. It returns the URL of the bm image.
func serveFlaky(t *testing.T, l *lab.Lab, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var name string
	for _, e := range entries {
		if strings.Contains(e.Name(), ".img.zst") {
			name = e.Name()
		}
	}
	require.NotEmpty(t, name)
	var cut atomic.Bool
	cut.Store(true)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(filepath.Join(dir, filepath.Base(r.URL.Path)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		st, _ := f.Stat()
		if r.Header.Get("Range") == "" && cut.CompareAndSwap(true, false) {
			w.Header().Set("Content-Length", strconv.FormatInt(st.Size(), 10))
			w.WriteHeader(http.StatusOK)
			_, _ = io.CopyN(w, f, st.Size()*2/5)
			w.(http.Flusher).Flush()
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		http.ServeContent(w, r, name, st.ModTime(), f)
	})
	ln, err := l.Net.Listen("tcp", l.Gateway.Addr().String()+":18080")
	require.NoError(t, err)
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Gateway.Addr().String() + ":18080/" + name
}

// Rack to ready for real KVM and Docker hosts (make run's first two
// servers): Debian images built by mmdebstrap (cached by recipe), installed
// by the agent, booted from disk; ready means rackcloud reached libvirtd
// and dockerd over mutual TLS with its host CA, at the endpoints stored.
func TestRackToReadyKVMAndDocker(t *testing.T) {
	l, token := upLabWith(t, lab.Config{Netns: "rctest-real", Gateway: netip.MustParsePrefix("10.80.0.1/24"), Nodes: 3,
		Roles: []rackcloud.HostRole{rackcloud.RoleKVM, rackcloud.RoleDocker, rackcloud.RoleDocker}, Onboard: true})
	a := apiClient{t: t, base: l.APIURL, token: token}
	start := time.Now()
	want := map[string]string{"kvm": "qemu+tls://", "docker": "tcp://"}
	for i, n := range l.Rack.Nodes {
		h := a.waitState(n, "ready", 15*time.Minute)
		t.Logf("%s (%s, %s) ready after %s at %s", n.Name, n.Firmware, h.Role, time.Since(start).Round(time.Second), h.Endpoint)
		require.Equal(t, string(l.Roles[i]), h.Role)
		require.True(t, strings.HasPrefix(h.Endpoint, want[h.Role]), h.Endpoint)
	}

	// The demo's container runs on the provisioned Docker host and its VM
	// on the provisioned KVM host (nested under TCG), both reached over
	// mutual TLS with the host CA's client certificate; both are deleted.
	start = time.Now()
	require.NoError(t, l.Demo(context.Background(), testWriter{t}))
	for _, name := range []string{lab.DemoContainer, lab.DemoVM} {
		g := a.waitGuest(name, "running", 10*time.Minute)
		t.Logf("guest %s running after %s on %s: %s", name, time.Since(start).Round(time.Second), g.HostID, g.Placement)
		marker := map[string]string{lab.DemoContainer: guestimg.ContainerMarker, lab.DemoVM: guestimg.VMMarker}[name]
		labtest.Eventually(t, 5*time.Minute, time.Second, name+"'s console to show "+marker, func() (bool, string) {
			var con struct {
				Text string `json:"text"`
			}
			code := a.call(http.MethodGet, "/v1/guests/"+g.ID+"/console", nil, &con)
			return code == 200 && strings.Contains(con.Text, marker), fmt.Sprintf("%d %q", code, con.Text)
		})
		t.Logf("guest %s: its console shows %q after %s", name, marker, time.Since(start).Round(time.Second))
		if name == lab.DemoVM {
			require.Equal(t, 202, a.call(http.MethodDelete, "/v1/guests/"+g.ID, nil, nil))
			a.waitGone(g.ID, 2*time.Minute)
		}
	}

	// Failover: the demo container's Docker host is powered off behind
	// rackcloud's back (its QEMU stops; its BMC reports off). Its agent
	// falls quiet, Prometheus's HostDown fires into Alertmanager, whose
	// webhook starts host.fence: the controller confirms, fences (the
	// BMC already says off), fails the host (fenced) and evacuates; the
	// container (HA restart) runs on the other Docker host; the alert
	// resolves.
	ct := a.waitGuest(lab.DemoContainer, "running", time.Minute)
	var dead *rack.Node
	for _, n := range l.Rack.Nodes {
		if h, _ := a.host(n.MAC.String()); h.ID == ct.HostID {
			dead = n
		}
	}
	require.NotNil(t, dead, "the container's host is a node of the rack")
	start = time.Now()
	dead.PowerOff()
	var moved labGuest
	labtest.Eventually(t, 5*time.Minute, time.Second, "the container running on another host", func() (bool, string) {
		moved = findGuest(a, lab.DemoContainer)
		return moved.State == "running" && moved.HostID != ct.HostID, fmt.Sprintf("%+v\nalerts: %s", moved, alertsIn(t, l))
	})
	failover := time.Since(start)
	labtest.Eventually(t, time.Minute, time.Second, "the container's marker on its new host", func() (bool, string) {
		var con struct {
			Text string `json:"text"`
		}
		code := a.call(http.MethodGet, "/v1/guests/"+moved.ID+"/console", nil, &con)
		return code == 200 && strings.Contains(con.Text, guestimg.ContainerMarker), fmt.Sprintf("%d %q", code, con.Text)
	})
	t.Logf("failover: %s powered off behind rackcloud's back; %s running on another host after %s (restarted and its marker shown after %s)",
		dead.Name, lab.DemoContainer, failover.Round(time.Second), time.Since(start).Round(time.Second))
	fenced, _ := a.host(dead.MAC.String())
	require.Equal(t, "failed", fenced.State)
	require.NotNil(t, fenced.Failure)
	require.Equal(t, "fenced", fenced.Failure.Reason, "%+v", fenced.Failure)
	labtest.Eventually(t, 2*time.Minute, time.Second, "HostDown resolved in Alertmanager", func() (bool, string) {
		b := alertsIn(t, l)
		return !strings.Contains(b, `"host":"`+fenced.Name+`"`), b
	})

	// The fenced host, repaired, is reset (wiped: its disk no longer
	// boots, the first MiB is zero), available again, and provisioned
	// with another role (bare metal).
	n := dead
	h := fenced
	require.Equal(t, 202, a.call(http.MethodPost, "/v1/hosts/"+h.ID+"/reset", nil, nil))
	a.waitState(n, "available", 5*time.Minute, h.Failure.TaskID)
	disk, err := os.Open(filepath.Join(n.Dir, "disk0.img"))
	require.NoError(t, err)
	head := make([]byte, 1<<20)
	_, err = io.ReadFull(disk, head)
	disk.Close()
	require.NoError(t, err)
	require.Equal(t, make([]byte, 1<<20), head, "the boot sector and partition table are gone")
	bm, err := hostimg.Build(context.Background(), hostimg.Options{Role: rackcloud.RoleBareMetal})
	require.NoError(t, err)
	id, err := l.ServeImage(context.Background(), lab.HostImage{Role: rackcloud.RoleBareMetal, Path: bm.Path, Size: bm.RawSize, SHA256: bm.SHA256})
	require.NoError(t, err)
	labtest.Eventually(t, time.Minute, time.Second, "the reset's task to end", func() (bool, string) {
		code := a.call(http.MethodPost, "/v1/hosts/"+h.ID+"/provision", map[string]any{"role": "bm", "image_id": id}, nil)
		return code == 202, fmt.Sprint(code)
	})
	h = a.waitState(n, "ready", 5*time.Minute)
	require.Equal(t, "bm", h.Role)
	require.Empty(t, h.Endpoint, "a bare-metal host has no daemon endpoint")
}

// alertsIn returns the lab Alertmanager's active alerts (JSON).
func alertsIn(t *testing.T, l *lab.Lab) string {
	resp, err := http.Get(l.Monitor.AlertmanagerURL + "/api/v2/alerts?active=true")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

type labGuest struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	State       string `json:"state"`
	StateReason string `json:"state_reason"`
	HostID      string `json:"host_id"`
	Placement   string `json:"placement"`
}

// waitGuest waits for the guest named name to reach state; a failed
// guest fails the test at once with its reason.
func (a apiClient) waitGuest(name, state string, within time.Duration) labGuest {
	a.t.Helper()
	var got labGuest
	labtest.Eventually(a.t, within, time.Second, "guest "+name+" "+state, func() (bool, string) {
		var page struct {
			Items []labGuest `json:"items"`
		}
		require.Equal(a.t, 200, a.call(http.MethodGet, "/v1/guests?limit=1000", nil, &page))
		for _, g := range page.Items {
			if g.Name == name {
				got = g
				require.NotEqual(a.t, "failed", g.State, "guest %s failed: %s (%s)", name, g.StateReason, g.Placement)
				return g.State == state, fmt.Sprintf("%+v", g)
			}
		}
		return false, "no guest " + name
	})
	return got
}

// waitGone waits until guest id is deleted.
func (a apiClient) waitGone(id string, within time.Duration) {
	a.t.Helper()
	labtest.Eventually(a.t, within, time.Second, "guest "+id+" deleted", func() (bool, string) {
		code := a.call(http.MethodGet, "/v1/guests/"+id, nil, nil)
		return code == 404, fmt.Sprint(code)
	})
}

// testWriter writes to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
