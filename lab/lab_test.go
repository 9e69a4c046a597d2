package lab_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/lab"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/monlab"
	"github.com/rackcloud/rackcloud/lab/proc"
	"github.com/rackcloud/rackcloud/lab/qemu"
	"github.com/rackcloud/rackcloud/lab/rack"
	"github.com/rackcloud/rackcloud/pxe"
)

// upLab brings the lab up on free ports with nodes simulated servers, a
// provisioning network named netns-<pid> with gateway gw, and returns it
// with its admin token; it goes down when the test ends.
func upLab(t *testing.T, netns, gw string, nodes int) (*lab.Lab, string) {
	t.Helper()
	return upLabWith(t, lab.Config{Netns: netns, Gateway: netip.MustParsePrefix(gw), Nodes: nodes})
}

// upLabWith brings the lab of c up on free ports in a new directory, its
// namespace named c.Netns-<pid>, and returns it with its admin token; it
// goes down when the test ends.
func upLabWith(t *testing.T, c lab.Config) (*lab.Lab, string) {
	t.Helper()
	ports := make([]int, 5)
	for i := range ports {
		p, err := proc.FreePort()
		require.NoError(t, err)
		ports[i] = p
	}
	c.Dir = t.TempDir()
	require.NoError(t, os.Chmod(filepath.Dir(c.Dir), 0o755)) // postgres must reach it
	c.APIPort, c.PostgresPort, c.PrometheusPort, c.AlertmanagerPort, c.NodeExporterPort = ports[0], ports[1], ports[2], ports[3], ports[4]
	c.Netns = fmt.Sprintf("%s-%d", c.Netns, os.Getpid())
	l, err := lab.Up(context.Background(), c, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	t.Cleanup(l.Down)
	token, err := l.Token()
	require.NoError(t, err)
	require.NotEmpty(t, token)
	return l, token
}

// The `make run` path: everything comes up, Prometheus sees the rackcloud
// target up, and a region round-trips through the API and PostgreSQL.
func TestUpEndToEnd(t *testing.T) {
	ctx := context.Background()
	l, token := upLab(t, "rctest-lab", "10.78.0.1/24", 3)
	do := func(method, path, body string) *http.Response {
		req, err := http.NewRequest(method, l.APIURL+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		return resp
	}
	resp := do(http.MethodPost, "/v1/regions", `{"name":"lab-region"}`)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	resp = do(http.MethodGet, "/v1/regions", "")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(b), `"name":"lab-region"`)

	var sb strings.Builder
	l.Print(&sb)
	require.Contains(t, sb.String(), l.Monitor.PrometheusURL)

	// The rack's servers wait powered off, and their BMCs (printed for the
	// operator) answer over IPMI and Redfish.
	require.Len(t, l.Rack.Nodes, 3)
	m, err := bmc.New(bmc.Config{RootCAs: l.Rack.CertPool()})
	require.NoError(t, err)
	defer m.Close(ctx)
	for _, n := range l.Rack.Nodes {
		require.Contains(t, sb.String(), n.IPMI.String())
		for _, ep := range []bmc.Endpoint{
			{Protocol: rackcloud.BMCIPMI, Address: n.IPMI.String(), Username: n.User, Password: bmc.NewSecret(n.Password)},
			{Protocol: rackcloud.BMCRedfish, Address: strings.TrimPrefix(n.RedfishURL, "https://"), Username: n.User, Password: bmc.NewSecret(n.Password)},
		} {
			c, err := m.Open(ctx, ep)
			require.NoError(t, err, ep.String())
			st, err := c.PowerState(ctx)
			require.NoError(t, err, ep.String())
			require.Equal(t, rackcloud.PowerOff, st, ep.String())
		}
	}

	// Rack and power on (DESIGN.md journey 1): node 1 (BIOS) is powered on
	// into PXE through its BMC, boots from the lab's boot service into the
	// inspection image, calls back, shows up in the API as a discovered
	// host, and its agent's inventory makes it available, with its real
	// resources, with no hand work.
	node := l.Rack.Nodes[0]
	c, err := m.Open(ctx, bmc.Endpoint{Protocol: rackcloud.BMCIPMI, Address: node.IPMI.String(), Username: node.User, Password: bmc.NewSecret(node.Password)})
	require.NoError(t, err)
	require.NoError(t, c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{}))
	require.NoError(t, c.SetPower(ctx, bmc.PowerOn))
	t.Cleanup(func() { _ = c.SetPower(context.Background(), bmc.PowerOff) })
	mac := node.MAC.String()
	waitAvailable := func(n *rack.Node) {
		t.Helper()
		mac := n.MAC.String()
		labtest.Eventually(t, 4*time.Minute, 500*time.Millisecond, "node "+mac+" to be discovered, inspected and available", func() (bool, string) {
			kinds := map[string]bool{}
			for _, e := range l.Boot.Timeline(mac) {
				kinds[string(e.Kind)] = true
			}
			resp := do(http.MethodGet, "/v1/hosts?mac="+mac, "")
			var page struct {
				Items []struct {
					Name      string               `json:"name"`
					State     string               `json:"state"`
					Inventory *rackcloud.Inventory `json:"inventory"`
					Resources struct {
						CPUs   int   `json:"cpu_cores"`
						Memory int64 `json:"memory_mib"`
					} `json:"resources"`
				} `json:"items"`
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&page))
			resp.Body.Close()
			if kinds["callback"] && kinds["inventory"] && len(page.Items) == 1 && page.Items[0].State == "available" {
				h := page.Items[0]
				require.NotNil(t, h.Inventory)
				require.Equal(t, n.Size.CPUs, h.Resources.CPUs, "the VM's CPUs")
				require.Greater(t, h.Resources.Memory, int64(0))
				require.Equal(t, string(n.Firmware), h.Inventory.Firmware)
				return true, ""
			}
			return false, fmt.Sprintf("timeline %v, hosts %+v, console:\n%s", kinds, page.Items, console(n))
		})
	}
	waitAvailable(node)

	// The operator gives the host a fixed provisioning address: its next
	// boot leases that address from the boot service's DHCP, from the
	// firmware's iPXE through to the booted image's callback.
	var page struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	resp = do(http.MethodGet, "/v1/hosts?mac="+mac, "")
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&page))
	resp.Body.Close()
	require.Len(t, page.Items, 1)
	const fixed = "10.78.0.77"
	resp = do(http.MethodPatch, "/v1/hosts/"+page.Items[0].ID, `{"provisioning_ipv4":"`+fixed+`"}`)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	since := len(l.Boot.Timeline(mac))
	require.NoError(t, c.SetBootDevice(ctx, bmc.BootPXE, bmc.BootOptions{}))
	require.NoError(t, c.SetPower(ctx, bmc.PowerCycle))
	labtest.Eventually(t, 3*time.Minute, 500*time.Millisecond, "node "+mac+" to call back after the power cycle", func() (bool, string) {
		var acks []string
		called := false
		for _, e := range l.Boot.Timeline(mac)[since:] {
			switch e.Kind {
			case pxe.EventDHCPAck:
				acks = append(acks, e.IP)
			case pxe.EventCallback:
				called = true
			}
		}
		if called {
			require.NotEmpty(t, acks)
			for _, ip := range acks {
				require.Equal(t, fixed, ip, "every lease of the boot is the fixed address")
			}
		}
		return called, fmt.Sprintf("acks %v, console:\n%s", acks, console(node))
	})

	// The operator links the host's BMC: the server's BMC polling finds
	// the machine powered on and the BMC healthy.
	body := fmt.Sprintf(`{"address":%q,"protocol":"ipmi","username":%q,"password":%q}`, node.IPMI.String(), node.User, node.Password)
	resp = do(http.MethodPut, "/v1/hosts/"+page.Items[0].ID+"/bmc", body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	// Another server is registered by its Redfish BMC (the server trusts
	// the rack's CA): it reads powered off.
	n2 := l.Rack.Nodes[1]
	body = fmt.Sprintf(`{"name":"node2-by-redfish","bmc":{"address":%q,"protocol":"redfish","username":%q,"password":%q}}`,
		strings.TrimPrefix(n2.RedfishURL, "https://"), n2.User, n2.Password)
	resp = do(http.MethodPost, "/v1/hosts", body)
	var created struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&created))
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	type observed struct {
		Power string `json:"power"`
		BMC   struct {
			Healthy bool   `json:"healthy"`
			Error   string `json:"error"`
		} `json:"bmc"`
	}
	observe := func(id string) observed {
		resp := do(http.MethodGet, "/v1/hosts/"+id, "")
		defer resp.Body.Close()
		var h observed
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&h))
		return h
	}
	labtest.Eventually(t, 2*time.Minute, 500*time.Millisecond, "power and BMC health observed", func() (bool, string) {
		h1, h2 := observe(page.Items[0].ID), observe(created.ID)
		return h1.Power == "on" && h1.BMC.Healthy && h2.Power == "off" && h2.BMC.Healthy,
			fmt.Sprintf("IPMI host %+v, Redfish host %+v", h1, h2)
	})

	// The UEFI server (node 2), registered by its Redfish BMC alone, is
	// enrolled (journey 2): the provisioner learns its MAC from the BMC and
	// powers it on into PXE through Redfish. OVMF's own PXE asks for iPXE's
	// size over TFTP and aborts (TFTP error 8, its message NUL-terminated),
	// then loads iPXE, the inspection image, and calls back: its whole
	// timeline reaches the API with clean text, nothing the boot service
	// sent was refused, and the host (the registered one, not a second,
	// discovered one) becomes available.
	require.Equal(t, qemu.UEFI, n2.Firmware)
	resp = do(http.MethodPost, "/v1/hosts/"+created.ID+"/enroll", "")
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode, string(b))
	t.Cleanup(n2.PowerOff)
	want := []string{"dhcp.discover", "dhcp.ack", "tftp.error", "tftp.done", "http.script", "http.kernel", "http.initrd", "callback", "inventory"}
	labtest.Eventually(t, 4*time.Minute, time.Second, "UEFI node "+n2.MAC.String()+" to call back, its timeline in the API", func() (bool, string) {
		resp := do(http.MethodGet, "/v1/boot/events?limit=1000&mac="+n2.MAC.String(), "")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var evs struct {
			Items []struct {
				Kind  string `json:"kind"`
				Error string `json:"error"`
			} `json:"items"`
		}
		require.NoError(t, json.Unmarshal(b, &evs), string(b))
		seen := map[string]bool{}
		for _, e := range evs.Items {
			seen[e.Kind] = true
			require.NotContains(t, e.Error, "\x00", "%s event with a NUL", e.Kind)
		}
		var missing []string
		for _, k := range want {
			if !seen[k] {
				missing = append(missing, k)
			}
		}
		return len(missing) == 0, fmt.Sprintf("missing %v of %d events, console:\n%s", missing, len(evs.Items), console(n2))
	})
	require.Zero(t, rejectedBootEvents(t, l), "the API refused none of the boot service's events")
	waitAvailable(n2)
	resp = do(http.MethodGet, "/v1/hosts?mac="+n2.MAC.String(), "")
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(b), `"name":"node2-by-redfish"`, "the boot is the registered host's, its MAC learnt from Redfish")
	// The boot service posted them as itself.
	resp = do(http.MethodGet, "/v1/audit-events?action=discoverHost&limit=100", "")
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(b), `"actor":"boot:lab-boot-`)
	require.NotContains(t, string(b), `"actor":"user:admin"`)

	// Enroll by BMC (DESIGN.md journey 2): node 3, registered with its MAC
	// and its IPMI BMC, is enrolled through the API: the provisioner sets
	// PXE and powers it on through the real ipmi_sim, its agent reports,
	// and it is available with its inventory, then powered off.
	n3 := l.Rack.Nodes[2]
	body = fmt.Sprintf(`{"name":"node3","macs":[%q],"bmc":{"address":%q,"protocol":"ipmi","username":%q,"password":%q}}`,
		n3.MAC.String(), n3.IPMI.String(), n3.User, n3.Password)
	resp = do(http.MethodPost, "/v1/hosts", body)
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&created))
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	resp = do(http.MethodPost, "/v1/hosts/"+created.ID+"/enroll", "")
	var task struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&task))
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	// taskSucceeds waits for a task to succeed (failing at once if it fails).
	taskSucceeds := func(id, what string, n *rack.Node) {
		t.Helper()
		labtest.Eventually(t, 4*time.Minute, time.Second, what, func() (bool, string) {
			resp := do(http.MethodGet, "/v1/tasks/"+id, "")
			var ts struct {
				State string `json:"state"`
				Error string `json:"error"`
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&ts))
			resp.Body.Close()
			require.NotEqual(t, "failed", ts.State, ts.Error)
			return ts.State == "succeeded", fmt.Sprintf("task %+v, console:\n%s", ts, console(n))
		})
	}
	taskSucceeds(task.ID, "node 3 enrolled through its BMC", n3)
	labtest.Eventually(t, time.Minute, 500*time.Millisecond, "node 3 available, powered off", func() (bool, string) {
		resp := do(http.MethodGet, "/v1/hosts/"+created.ID, "")
		var h struct {
			State     string `json:"state"`
			Power     string `json:"power"`
			Resources struct {
				CPUs int `json:"cpu_cores"`
			} `json:"resources"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&h))
		resp.Body.Close()
		require.Equal(t, "available", h.State)
		require.Equal(t, n3.Size.CPUs, h.Resources.CPUs)
		return h.Power == "off" && n3.Machine() == nil, fmt.Sprintf("%+v", h)
	})

	// Deprovision (the lifecycle's way back): node 3's disk gets an "old
	// OS" at both ends; deprovisioning boots it for the agent to wipe, and
	// the host is available again with the ends of its disk zeroed.
	disk := filepath.Join(n3.Dir, "disk0.img")
	marker := bytes.Repeat([]byte("OLD-OS!!"), 128) // 1 KiB
	st, err := os.Stat(disk)
	require.NoError(t, err)
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(marker, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(marker, st.Size()-int64(len(marker)))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	resp = do(http.MethodPost, "/v1/hosts/"+created.ID+"/deprovision", "")
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&task))
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	taskSucceeds(task.ID, "node 3 deprovisioned", n3)
	f, err = os.Open(disk)
	require.NoError(t, err)
	head, tail := make([]byte, 1<<20), make([]byte, 1<<20)
	_, err = f.ReadAt(head, 0)
	require.NoError(t, err)
	_, err = f.ReadAt(tail, st.Size()-int64(len(tail)))
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.Equal(t, make([]byte, 1<<20), head, "the start of the disk is wiped")
	require.Equal(t, make([]byte, 1<<20), tail, "the end of the disk (a GPT backup) is wiped")

	qctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	_, err = monlab.WaitQuery(qctx, l.Monitor.PrometheusURL, `up{job="rackcloud"}`, func(r []monlab.Sample) bool {
		return len(r) == 1 && r[0].Value == "1"
	})
	require.NoError(t, err, "Prometheus never saw the rackcloud target up")
	// The boot service, in the provisioning namespace, is scraped through
	// SD on its metrics listener on loopback; the rack's hosts are
	// discovered with their labels (their node exporters are out of reach).
	_, err = monlab.WaitQuery(qctx, l.Monitor.PrometheusURL, `rackcloud_boot_dhcp_pool_addresses{job="rackcloud-boot",boot_service="rack1"}`,
		func(r []monlab.Sample) bool { return len(r) == 1 && r[0].Value != "0" })
	require.NoError(t, err, "Prometheus never scraped the boot service through SD")
	_, err = monlab.WaitQuery(qctx, l.Monitor.PrometheusURL, `up{job="rackcloud-hosts",host=~".+",zone=~".*"}`,
		func(r []monlab.Sample) bool { return len(r) > 0 })
	require.NoError(t, err, "Prometheus never discovered the rack's hosts through SD")
	// The server rendered the shipped rules into the directory the lab's
	// Prometheus loads, and reloaded it.
	labtest.Eventually(t, 45*time.Second, 500*time.Millisecond, "the shipped rules in Prometheus", func() (bool, string) {
		resp, err := http.Get(l.Monitor.PrometheusURL + "/api/v1/rules")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), `"name":"HostDown"`) && strings.Contains(string(b), `"name":"rackcloud-api"`), string(b)
	})
	l.Down()
	l.Down()
	_, err = http.Get(l.APIURL + "/healthz")
	require.Error(t, err, "server still answers after Down")
	_, err = os.Stat(l.Net.Path())
	require.True(t, os.IsNotExist(err), "provisioning namespace left behind")
}

// rejectedBootEvents sums rackcloud_boot_events_rejected_total over its
// reasons, from the boot service's own registry.
func rejectedBootEvents(t *testing.T, l *lab.Lab) float64 {
	mfs, err := l.BootRegistry.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "rackcloud_boot_events_rejected_total" {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func console(n *rack.Node) string {
	if m := n.Machine(); m != nil {
		return m.Console()
	}
	return "(no machine running)"
}
