// Command failover measures host-down to guests running elsewhere, end to
// end in the lab with the intervals it ships (Prometheus scrape and rule
// evaluation 5 s, HostDown after 25 s without a heartbeat for 10 s,
// Alertmanager's remediation route 1 s): two Docker hosts are
// provisioned (QEMU under TCG), a container with HA policy restart runs
// on one, and that host is powered off behind rackcloud's back. The clock
// runs from the power-off until the container runs on the other host;
// the phases (HostDown firing in Prometheus, the fence task, the
// container running) are printed on the way.
//
// No peer can run here: the last line compares with Kubernetes' default
// for a dead node's pods to be rescheduled (node-monitor-grace-period
// 40 s plus the default 300 s toleration of not-ready/unreachable: about
// 5 min 40 s), a documented figure, not a measurement:
//
//	BENCH failover failover_s=<rackcloud> k8s_default_s=340 ratio=<340/rackcloud>
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab"
	"github.com/rackcloud/rackcloud/lab/guestimg"
	"github.com/rackcloud/rackcloud/lab/proc"
	"github.com/rackcloud/rackcloud/lab/rack"
)

// k8sDefault is Kubernetes' documented default (see the package doc).
const k8sDefault = 340 * time.Second

func main() {
	timeout := flag.Duration("timeout", 30*time.Minute, "give up after this long")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(1)
	}
}

type api struct {
	base, token string
}

func (a api) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

type host struct {
	ID, Name, State string
	MACs            []string `json:"macs"`
}

type guest struct {
	ID, Name, State string
	HostID          string `json:"host_id"`
}

func (a api) hosts(ctx context.Context) ([]host, error) {
	var page struct{ Items []host }
	err := a.call(ctx, http.MethodGet, "/v1/hosts?limit=100", nil, &page)
	return page.Items, err
}

func (a api) guest(ctx context.Context, id string) (guest, error) {
	var g guest
	return g, a.call(ctx, http.MethodGet, "/v1/guests/"+id, nil, &g)
}

// poll calls f every interval until it reports done, or ctx ends.
func poll(ctx context.Context, interval time.Duration, what string, f func() (bool, error)) error {
	var last error
	for {
		done, err := f()
		if done {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last error: %v)", what, ctx.Err(), last)
		case <-time.After(interval):
		}
	}
}

func run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "rcfailover")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil { // postgres must reach it
		return err
	}
	c := lab.Config{Dir: dir, Netns: fmt.Sprintf("rcbench-fo-%d", os.Getpid()), Gateway: netip.MustParsePrefix("10.82.0.1/24"),
		Nodes: 2, Roles: []rackcloud.HostRole{rackcloud.RoleDocker, rackcloud.RoleDocker}, Onboard: true}
	for _, p := range []*int{&c.APIPort, &c.PostgresPort, &c.PrometheusPort, &c.AlertmanagerPort, &c.NodeExporterPort, &c.BootMetricsPort} {
		if *p, err = proc.FreePort(); err != nil {
			return err
		}
	}
	start := time.Now()
	l, err := lab.Up(ctx, c, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer l.Down()
	token, err := l.Token()
	if err != nil {
		return err
	}
	a := api{base: l.APIURL, token: token}
	if err := poll(ctx, 2*time.Second, "two ready docker hosts", func() (bool, error) {
		hs, err := a.hosts(ctx)
		ready := 0
		for _, h := range hs {
			if h.State == string(rackcloud.HostReady) {
				ready++
			}
		}
		return ready == 2, err
	}); err != nil {
		return err
	}
	fmt.Printf("two docker hosts ready after %s\n", time.Since(start).Round(time.Second))

	path, sum, size, err := guestimg.Container("")
	if err != nil {
		return err
	}
	var im, proj, task struct{ ID string }
	if err := a.call(ctx, http.MethodPost, "/v1/images", map[string]any{"name": "busybox", "url": "file://" + path,
		"checksum": sum, "format": "docker-archive", "size": size}, &im); err != nil {
		return err
	}
	if err := a.call(ctx, http.MethodPost, "/v1/projects", map[string]any{"name": "bench"}, &proj); err != nil {
		return err
	}
	if err := a.call(ctx, http.MethodPut, "/v1/projects/"+proj.ID+"/quota",
		map[string]any{"reserved": map[string]any{"vcpu": 4, "memory_mib": 1024, "disk_gib": 4, "hosts": 0}}, nil); err != nil {
		return err
	}
	var g guest
	if err := a.call(ctx, http.MethodPost, "/v1/guests", map[string]any{"name": "ha", "project_id": proj.ID, "kind": "container",
		"image_id": im.ID, "ha": "restart", "flavor": map[string]any{"vcpu": 1, "memory_mib": 64, "disk_gib": 1}}, &task); err != nil {
		return err
	}
	var id string
	if err := poll(ctx, time.Second, "the container running", func() (bool, error) {
		var page struct{ Items []guest }
		if err := a.call(ctx, http.MethodGet, "/v1/guests", nil, &page); err != nil {
			return false, err
		}
		for _, x := range page.Items {
			if x.Name == "ha" {
				id, g = x.ID, x
			}
		}
		return g.State == string(rackcloud.GuestRunning), nil
	}); err != nil {
		return err
	}
	hs, err := a.hosts(ctx)
	if err != nil {
		return err
	}
	var dead *rack.Node
	for _, h := range hs {
		if h.ID != g.HostID {
			continue
		}
		for _, n := range l.Rack.Nodes {
			for _, m := range h.MACs {
				if strings.EqualFold(m, n.MAC.String()) {
					dead = n
				}
			}
		}
	}
	if dead == nil {
		return fmt.Errorf("the container's host %s is no node of the rack", g.HostID)
	}

	// Let the heartbeats and Prometheus settle, then pull the plug.
	time.Sleep(15 * time.Second)
	t0 := time.Now()
	dead.PowerOff()
	fmt.Printf("%s powered off behind rackcloud's back\n", dead.Name)
	var fired, fenced bool
	if err := poll(ctx, 250*time.Millisecond, "the container running on the other host", func() (bool, error) {
		if !fired && alertFiring(ctx, l.Monitor.PrometheusURL) {
			fired = true
			fmt.Printf("  +%5.1fs HostDown firing in Prometheus\n", time.Since(t0).Seconds())
		}
		if !fenced {
			var tl struct{ Items []struct{ Kind string } }
			if a.call(ctx, http.MethodGet, "/v1/tasks?kind="+rackcloud.KindHostFence, nil, &tl) == nil && len(tl.Items) > 0 {
				fenced = true
				fmt.Printf("  +%5.1fs host.fence submitted (Alertmanager called the webhook)\n", time.Since(t0).Seconds())
			}
		}
		x, err := a.guest(ctx, id)
		return err == nil && x.State == string(rackcloud.GuestRunning) && x.HostID != g.HostID, err
	}); err != nil {
		return err
	}
	took := time.Since(t0)
	fmt.Printf("  +%5.1fs the container runs on the other host\n", took.Seconds())
	fmt.Printf("BENCH failover failover_s=%.1f k8s_default_s=%.0f ratio=%.2f\n", took.Seconds(), k8sDefault.Seconds(),
		k8sDefault.Seconds()/took.Seconds())
	return nil
}

// alertFiring reports whether Prometheus has HostDown firing.
func alertFiring(ctx context.Context, prom string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, prom+"/api/v1/alerts", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(b), `"alertname":"HostDown"`) && strings.Contains(string(b), `"state":"firing"`)
}
