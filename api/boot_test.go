package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/api"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/pxe"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// strictProfile decodes the API's answer into pxe.Profile, refusing
// fields pxe.Profile does not have, and requires that pxe.Profile encodes
// back to the same JSON: the two wire structs cannot drift apart.
func strictProfile(t *testing.T, body []byte) pxe.Profile {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var p pxe.Profile
	require.NoError(t, dec.Decode(&p), string(body))
	again, err := json.Marshal(p)
	require.NoError(t, err)
	require.JSONEq(t, string(body), string(again))
	return p
}

func TestBootProfile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	op, _ := e.token("boot-svc", rackcloud.RoleOperator)
	viewer, _ := e.token("eve", rackcloud.RoleViewer)
	proj := e.must(201, "POST", "/v1/projects", e.admin, map[string]any{"name": "p1"})["id"].(string)
	member, _ := e.token("mia", rackcloud.RoleMember, proj)

	h := e.must(201, "POST", "/v1/hosts", e.admin, map[string]any{"name": "node1", "macs": []string{"52:54:00:AA:01:01", "52:54:00:aa:01:02"}})
	id := h["id"].(string)

	// Without an image: the state and an empty boot profile.
	r := e.do("GET", "/v1/boot/profiles/52:54:00:aa:01:02", op, nil)
	require.Equal(t, 200, r.Code, r.String())
	require.Equal(t, pxe.Profile{MAC: "52:54:00:aa:01:02", HostID: id, Hostname: "node1", State: rackcloud.HostDiscovered, Version: 1,
		Action: pxe.ActionNetboot, Purpose: api.BootInspection}, strictProfile(t, r.Body))

	// With an image: what the host boots follows its state (BootFor): a
	// failed host boots its disk; any MAC spelling finds the host.
	im := e.must(201, "POST", "/v1/images", e.admin, map[string]any{"name": "installer", "url": "http://127.0.0.1/x.raw",
		"checksum": checksum, "format": "raw", "boot": map[string]string{"kernel": "install/vmlinuz", "initrd": "install/initrd.img",
			"cmdline": "console=ttyS0", "script": "#!ipxe\nboot"}})
	ctx := context.Background()
	host, err := store.GetHost(ctx, e.pool, id)
	require.NoError(t, err)
	host.ImageID = im["id"].(string)
	host, err = store.UpdateHost(ctx, e.pool, host)
	require.NoError(t, err)
	_, err = store.TransitionHost(ctx, e.pool, id, store.Transition{From: rackcloud.HostDiscovered, To: rackcloud.HostInspecting})
	require.NoError(t, err)
	host, err = store.TransitionHost(ctx, e.pool, id, store.Transition{From: rackcloud.HostInspecting, To: rackcloud.HostFailed,
		Failure: &rackcloud.HostFailure{Reason: rackcloud.FailNoDisk, Detail: "install: disk not found"}})
	require.NoError(t, err)
	r = e.do("GET", "/v1/boot/profiles/52-54-00-AA-01-01", e.admin, nil)
	require.Equal(t, 200, r.Code, r.String())
	require.Equal(t, pxe.Profile{MAC: "52:54:00:aa:01:01", HostID: id, Hostname: "node1", State: rackcloud.HostFailed,
		StateReason: "install: disk not found", Version: host.Version, Action: pxe.ActionLocal, Purpose: api.BootLocal},
		strictProfile(t, r.Body))
	// Provisioning: the image's installer.
	_, err = store.TransitionHost(ctx, e.pool, id, store.Transition{From: rackcloud.HostFailed, To: rackcloud.HostProvisioning})
	require.NoError(t, err)
	r = e.do("GET", "/v1/boot/profiles/52:54:00:aa:01:01", e.admin, nil)
	require.Equal(t, 200, r.Code, r.String())
	got := strictProfile(t, r.Body)
	require.Equal(t, pxe.ActionNetboot, got.Action)
	require.Equal(t, api.BootInstall, got.Purpose)
	require.Equal(t, rackcloud.BootProfile{Kernel: "install/vmlinuz", Initrd: "install/initrd.img", Cmdline: "console=ttyS0", Script: "#!ipxe\nboot"}, got.Boot)

	// A fixed provisioning address reaches the boot service as the
	// profile's ipv4 (full DHCP reserves it); it is unique, checked, and
	// can be removed.
	e.must(200, "PATCH", "/v1/hosts/"+id, e.admin, map[string]any{"provisioning_ipv4": "10.77.0.21"})
	r = e.do("GET", "/v1/boot/profiles/52:54:00:aa:01:01", op, nil)
	require.Equal(t, 200, r.Code, r.String())
	require.Equal(t, netip.MustParseAddr("10.77.0.21"), strictProfile(t, r.Body).IPv4)
	require.Equal(t, "10.77.0.21", e.must(200, "GET", "/v1/hosts/"+id, e.admin, nil)["provisioning_ipv4"])
	e.problem(e.do("POST", "/v1/hosts", e.admin, map[string]any{"name": "node2", "macs": []string{"52:54:00:aa:02:01"},
		"provisioning_ipv4": "10.77.0.21"}), 409, api.ProblemConflict)
	for _, bad := range []any{"10.77.0.256", "fd00::1", "127.0.0.1", "0.0.0.0", "224.0.0.1", 7} {
		e.problem(e.do("POST", "/v1/hosts", e.admin, map[string]any{"name": "node3", "macs": []string{"52:54:00:aa:03:01"},
			"provisioning_ipv4": bad}), 422, api.ProblemValidation)
	}
	e.problem(e.do("PATCH", "/v1/hosts/"+id, e.admin, map[string]any{"provisioning_ipv4": "10.77.0"}), 422, api.ProblemValidation)
	n2 := e.must(201, "POST", "/v1/hosts", e.admin, map[string]any{"name": "node2", "macs": []string{"52:54:00:aa:02:01"},
		"provisioning_ipv4": "10.77.0.22"})
	require.Equal(t, "10.77.0.22", n2["provisioning_ipv4"])
	e.must(200, "PATCH", "/v1/hosts/"+id, e.admin, map[string]any{"provisioning_ipv4": ""})
	r = e.do("GET", "/v1/boot/profiles/52:54:00:aa:01:01", op, nil)
	require.False(t, strictProfile(t, r.Body).IPv4.IsValid())
	require.NotContains(t, r.String(), "ipv4")

	e.problem(e.do("GET", "/v1/boot/profiles/52:54:00:aa:09:09", op, nil), 404, api.ProblemNotFound)
	for _, bad := range []string{"zz", "52:54:00:aa:01", "52:54:00:aa:01:01:02:03"} {
		e.problem(e.do("GET", "/v1/boot/profiles/"+bad, op, nil), 422, api.ProblemValidation)
	}
	e.problem(e.do("GET", "/v1/boot/profiles/52:54:00:aa:01:01", viewer, nil), 403, api.ProblemForbidden)
	e.problem(e.do("GET", "/v1/boot/profiles/52:54:00:aa:01:01", member, nil), 403, api.ProblemForbidden)
	e.problem(e.do("GET", "/v1/boot/profiles/52:54:00:aa:01:01", "", nil), 401, api.ProblemUnauthorized)
}

// batch is a boot as the boot service reports it, built from pxe's own
// types so that the API is tested against what pxe sends.
func batch(t *testing.T, at time.Time) []pxe.Event {
	t.Helper()
	const newMAC, plain = "52:54:00:cc:00:01", "52:54:00:cc:00:99"
	return []pxe.Event{
		{Time: at, MAC: newMAC, Kind: pxe.EventDHCPDiscover, Client: pxe.ClientBIOS},
		{Time: at.Add(1 * time.Millisecond), MAC: newMAC, Kind: pxe.EventDHCPOffer, Client: pxe.ClientBIOS, IP: "10.88.0.21", File: "undionly.kpxe"},
		{Time: at.Add(2 * time.Millisecond), MAC: newMAC, Kind: pxe.EventTFTPDone, IP: "10.88.0.21", File: "undionly.kpxe", Bytes: 70000, Duration: 300 * time.Millisecond},
		{Time: at.Add(3 * time.Millisecond), MAC: "", Kind: pxe.EventTFTPError, IP: "10.88.0.77", File: "pxelinux.0", Error: "no such file"},
		{Time: at.Add(4 * time.Millisecond), MAC: newMAC, Kind: pxe.EventHTTPScript, IP: "10.88.0.21", File: "/boot/52:54:00:cc:00:01.ipxe", State: rackcloud.HostDiscovered, Cached: true},
		{Time: at.Add(5 * time.Millisecond), MAC: newMAC, Kind: pxe.EventCallback, IP: "10.88.0.21", Data: json.RawMessage(`{"cpus":4}`)},
		// A DHCP client that does not network-boot is not a new host.
		{Time: at.Add(6 * time.Millisecond), MAC: plain, Kind: pxe.EventDHCPDiscover, Client: pxe.ClientDHCP},
	}
}

func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	require.NoError(e.t, e.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func TestBootEventsDiscoverOnceAndDedupe(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	op, _ := e.token("boot-svc", rackcloud.RoleOperator)
	evs := batch(t, time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC))

	// The same batch twice at once (a retry racing the original): one
	// host, each event stored once.
	var wg sync.WaitGroup
	res := make([]map[string]any, 2)
	for i := range res {
		wg.Go(func() { res[i] = e.must(202, "POST", "/v1/boot/events", op, evs) })
	}
	wg.Wait()
	sum := func(k string) float64 { return res[0][k].(float64) + res[1][k].(float64) }
	require.EqualValues(t, len(evs), sum("accepted"), "%v", res)
	require.EqualValues(t, len(evs), sum("duplicates"), "%v", res)
	require.EqualValues(t, 1, sum("discovered_hosts"), "%v", res)
	require.Equal(t, len(evs), e.count(`SELECT count(*) FROM boot_events`))

	hosts := e.must(200, "GET", "/v1/hosts?mac=52:54:00:cc:00:01", op, nil)["items"].([]any)
	require.Len(t, hosts, 1)
	h := hosts[0].(map[string]any)
	require.Equal(t, "discovered-525400cc0001", h["name"])
	require.Equal(t, "discovered", h["state"])
	require.Equal(t, []any{"52:54:00:cc:00:01"}, h["macs"])
	require.Empty(t, e.must(200, "GET", "/v1/hosts?mac=52:54:00:cc:00:99", op, nil)["items"])
	require.Equal(t, 1, e.count(`SELECT count(*) FROM hosts`))
	require.Equal(t, 1, e.count(`SELECT count(*) FROM audit_events WHERE action = 'discoverHost' AND target = $1
		AND actor = 'user:boot-svc' AND outcome = 'success'`, "host/"+h["id"].(string)))

	// The boot service now knows it.
	r := e.do("GET", "/v1/boot/profiles/52:54:00:cc:00:01", op, nil)
	require.Equal(t, 200, r.Code, r.String())
	require.Equal(t, rackcloud.HostDiscovered, strictProfile(t, r.Body).State)

	// Later: the same batch again is all duplicates; a new event of the
	// known host is stored with its host.
	m := e.must(202, "POST", "/v1/boot/events", op, evs)
	require.EqualValues(t, map[string]any{"accepted": 0.0, "duplicates": float64(len(evs)), "discovered_hosts": 0.0}, m)
	more := []pxe.Event{{Time: evs[0].Time.Add(time.Minute), MAC: "52:54:00:CC:00:01", Kind: pxe.EventDHCPAck, Client: pxe.ClientIPXE, IP: "10.88.0.21"}}
	m = e.must(202, "POST", "/v1/boot/events", op, more)
	require.EqualValues(t, map[string]any{"accepted": 1.0, "duplicates": 0.0, "discovered_hosts": 0.0}, m)
	require.Equal(t, len(evs)+1, e.count(`SELECT count(*) FROM boot_events`))
	require.Equal(t, 6, e.count(`SELECT count(*) FROM boot_events WHERE host_id = $1`, h["id"]))

	// The host's timeline, oldest first, two at a time.
	var got []map[string]any
	next := "/v1/hosts/" + h["id"].(string) + "/boot-events?limit=2"
	for pages := 0; next != ""; pages++ {
		require.Less(t, pages, 5)
		r := e.do("GET", next, op, nil)
		require.Equal(t, 200, r.Code, r.String())
		for _, it := range r.json(t)["items"].([]any) {
			got = append(got, it.(map[string]any))
		}
		next = ""
		if l := r.Header.Get("Link"); l != "" {
			next = strings.TrimSuffix(strings.TrimPrefix(l, "<"), `>; rel="next"`)
		}
	}
	var kinds []string
	for _, g := range got {
		kinds = append(kinds, g["kind"].(string))
		require.Equal(t, "52:54:00:cc:00:01", g["mac"])
		require.Equal(t, h["id"], g["host_id"])
	}
	require.Equal(t, []string{"dhcp.discover", "dhcp.offer", "tftp.done", "http.script", "callback", "dhcp.ack"}, kinds)
	require.Equal(t, "2026-03-04T05:06:07.123456Z", got[0]["time"])
	require.EqualValues(t, 70000, got[2]["bytes"])
	require.EqualValues(t, 300*time.Millisecond, got[2]["duration"])
	require.Equal(t, true, got[3]["cached"])
	require.Equal(t, "discovered", got[3]["state"])
	require.Equal(t, map[string]any{"cpus": 4.0}, got[4]["data"])

	// Every MAC's events, and one MAC's.
	all := e.must(200, "GET", "/v1/boot/events?limit=1000", op, nil)["items"].([]any)
	require.Len(t, all, len(evs)+1)
	plain := e.must(200, "GET", "/v1/boot/events?mac=52-54-00-CC-00-99", op, nil)["items"].([]any)
	require.Len(t, plain, 1)
	require.Nil(t, plain[0].(map[string]any)["host_id"])

	e.problem(e.do("GET", "/v1/hosts/00000000-0000-0000-0000-000000000000/boot-events", op, nil), 404, api.ProblemNotFound)
	e.problem(e.do("GET", "/v1/boot/events?mac=nope", op, nil), 422, api.ProblemValidation)
	e.problem(e.do("GET", "/v1/boot/events?cursor=0", op, nil), 422, api.ProblemValidation)
}

func TestBootEventsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	op, _ := e.token("boot-svc", rackcloud.RoleOperator)
	viewer, _ := e.token("eve", rackcloud.RoleViewer)
	proj := e.must(201, "POST", "/v1/projects", e.admin, map[string]any{"name": "p1"})["id"].(string)
	member, _ := e.token("mia", rackcloud.RoleMember, proj)
	good := map[string]any{"time": "2026-01-02T03:04:05.678Z", "mac": "52:54:00:dd:00:01", "kind": "dhcp.discover", "client": "bios"}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for kk, vv := range good {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	before := e.snapshot()
	for name, body := range map[string]any{
		"bad mac":      []any{good, with("mac", "52:54:00:dd:00")},
		"bad kind":     []any{good, with("kind", "dhcp.bogus")},
		"no kind":      []any{good, with("kind", nil)},
		"no time":      []any{good, with("time", nil)},
		"zero time":    []any{good, with("time", "0001-01-01T00:00:00Z")},
		"bad time":     []any{good, with("time", "yesterday")},
		"bad state":    []any{good, with("state", "booting")},
		"neg bytes":    []any{good, with("bytes", -1)},
		"not an array": good,
		"not json":     "[{",
		"too many":     make([]any, api.MaxBootEventsBatch+1),
	} {
		if name == "too many" {
			for i := range body.([]any) {
				body.([]any)[i] = good
			}
		}
		r := e.do("POST", "/v1/boot/events", op, body)
		require.Contains(t, []int{400, 422}, r.Code, "%s: %s", name, r.Body)
		e.problem(r, r.Code, api.ProblemValidation)
	}
	e.problem(e.do("POST", "/v1/boot/events", viewer, []any{good}), 403, api.ProblemForbidden)
	e.problem(e.do("POST", "/v1/boot/events", member, []any{good}), 403, api.ProblemForbidden)
	e.problem(e.do("GET", "/v1/boot/events", member, nil), 403, api.ProblemForbidden)
	require.Equal(t, before, e.snapshot(), "refused batches change nothing")
	require.Equal(t, 0, e.count(`SELECT count(*) FROM boot_events`))

	// Fields a newer boot service adds do not get its batches refused.
	m := e.must(202, "POST", "/v1/boot/events", op, []any{with("firmware", "edk2")})
	require.EqualValues(t, 1, m["accepted"])
}

// The boot service's own client, pointed at the real API with an operator
// token: it reads profiles and its events make a new server appear.
func TestBootServiceClientAgainstAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	op, _ := e.token("boot-svc", rackcloud.RoleOperator)
	e.must(201, "POST", "/v1/hosts", e.admin, map[string]any{"name": "node1", "macs": []string{"52:54:00:ee:00:01"}})

	c, err := pxe.NewAPIClient(pxe.APIConfig{BaseURL: e.srv.URL, Token: op, CacheFile: t.TempDir() + "/profiles.json"},
		slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	done := make(chan error, 1)
	runCtx, stop := context.WithCancel(ctx)
	go func() { done <- c.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })

	p, err := c.Profile(ctx, "52:54:00:ee:00:01")
	require.NoError(t, err)
	require.Equal(t, "node1", p.Hostname)
	require.Equal(t, rackcloud.HostDiscovered, p.State)
	require.False(t, p.Cached)
	_, err = c.Profile(ctx, "52:54:00:ee:00:02")
	require.ErrorIs(t, err, rackcloud.ErrNotFound)
	require.True(t, c.Reachable())

	now := time.Now()
	c.Record(pxe.Event{Time: now, MAC: "52:54:00:ee:00:02", Kind: pxe.EventDHCPDiscover, Client: pxe.ClientUEFI})
	c.Record(pxe.Event{Time: now.Add(time.Millisecond), MAC: "52:54:00:ee:00:01", Kind: pxe.EventDHCPDiscover, Client: pxe.ClientIPXE})
	for ctx.Err() == nil && (c.Pending() > 0 || e.count(`SELECT count(*) FROM boot_events`) < 2) {
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	require.NoError(t, ctx.Err(), "events not delivered")
	require.Equal(t, 2, e.count(`SELECT count(*) FROM boot_events WHERE host_id IS NOT NULL`))
	p, err = c.Profile(ctx, "52:54:00:ee:00:02")
	require.NoError(t, err, "the new server is known now")
	require.Equal(t, "discovered-525400ee0002", p.Hostname)
}

// A netboot's token hash is kept as the host's boot token (a newer boot's
// replaces it, an older one's does not), and the host's callback wakes the
// task waiting for it, in the transaction that stores the event.
func TestBootEventsKeepTokenAndWakeTheWaitingTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const mac = "52:54:00:aa:0d:01"
	sum := func(tok string) string { s := sha256.Sum256([]byte(tok)); return hex.EncodeToString(s[:]) }
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ev := func(at time.Time, kind string, extra map[string]any) map[string]any {
		m := map[string]any{"time": at.Format(time.RFC3339Nano), "mac": mac, "kind": kind, "client": "ipxe"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	e.must(202, "POST", "/v1/boot/events", e.admin, []any{
		ev(t0, "http.script", map[string]any{"boot_token_sha256": sum("boot-2")}),
	})
	e.must(202, "POST", "/v1/boot/events", e.admin, []any{ // a late event of an older boot
		ev(t0.Add(-time.Minute), "http.script", map[string]any{"boot_token_sha256": sum("boot-1")}),
	})
	host := e.must(200, "GET", "/v1/hosts?mac="+mac, e.admin, nil)["items"].([]any)[0].(map[string]any)["id"].(string)
	ctx := context.Background()
	for tok, want := range map[string]bool{"boot-2": true, "boot-1": false, "": false, "forged": false} {
		ok, err := store.CheckBootToken(ctx, e.pool, host, tok)
		require.NoError(t, err)
		require.Equal(t, want, ok, "token %q", tok)
	}
	r := e.do("POST", "/v1/boot/events", e.admin, []any{ev(t0, "http.script", map[string]any{"boot_token_sha256": "not-hex"})})
	e.problem(r, 422, api.ProblemValidation)

	info, err := e.engine.Submit(ctx, e.pool, tasks.Submission{Kind: kindAwaitCallback, Target: "host/" + host})
	require.NoError(t, err)
	labtest.Eventually(t, 30*time.Second, 50*time.Millisecond, "the task to wait for the callback", func() (bool, string) {
		got, err := e.engine.Get(ctx, info.ID)
		require.NoError(t, err)
		return got.WaitingFor == "boot callback", fmt.Sprintf("%+v", got.Task)
	})
	e.must(202, "POST", "/v1/boot/events", e.admin, []any{ev(t0.Add(time.Minute), "callback", map[string]any{"data": map[string]any{"uptime": 3}})})
	labtest.Eventually(t, 30*time.Second, 50*time.Millisecond, "the callback to wake the task", func() (bool, string) {
		got, err := e.engine.Get(ctx, info.ID)
		require.NoError(t, err)
		return got.State == rackcloud.TaskSucceeded, fmt.Sprintf("%+v", got.Task)
	})
}

// A discovered host whose agent reports its inventory from the inspection
// image is inspected by a host.enroll task that knows it booted by itself
// (the boot service's report starts it, audited as the boot service); a
// second report does not start a second task.
func TestInventoryOfADiscoveredHostStartsItsInspection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	boot := e.must(201, "POST", "/v1/tokens", e.admin, map[string]any{"name": "rack9", "role": "boot"})["secret"].(string)
	const mac = "52:54:00:aa:0e:01"
	at := time.Now().UTC()
	inv := map[string]any{"cpus": 2, "memory_mib": 2048}
	e.must(202, "POST", "/v1/boot/events", boot, []any{
		map[string]any{"time": at.Format(time.RFC3339Nano), "mac": mac, "kind": "dhcp.discover", "client": "ipxe"},
		map[string]any{"time": at.Add(time.Second).Format(time.RFC3339Nano), "mac": mac, "kind": "inventory", "data": inv},
	})
	host := e.must(200, "GET", "/v1/hosts?mac="+mac, e.admin, nil)["items"].([]any)[0].(map[string]any)["id"].(string)
	tasksOf := func() []any {
		return e.must(200, "GET", "/v1/tasks?target=host/"+host, e.admin, nil)["items"].([]any)
	}
	ts := tasksOf()
	require.Len(t, ts, 1)
	require.Equal(t, api.KindHostEnroll, ts[0].(map[string]any)["kind"])
	info, err := e.engine.Get(context.Background(), ts[0].(map[string]any)["id"].(string))
	require.NoError(t, err)
	require.JSONEq(t, `{"host_id":"`+host+`","booted":true}`, string(info.Params))
	ev := e.must(200, "GET", "/v1/audit-events?action=enrollHost", e.admin, nil)["items"].([]any)
	require.Len(t, ev, 1)
	require.Equal(t, "boot:rack9", ev[0].(map[string]any)["actor"])

	// A host that is not discovered (here: available) reporting again
	// starts nothing: only its own task takes reports.
	e.waitTask(e.admin, info.ID)
	_, err = store.TransitionHost(context.Background(), e.pool, host, store.Transition{From: rackcloud.HostDiscovered, To: rackcloud.HostInspecting})
	require.NoError(t, err)
	_, err = store.TransitionHost(context.Background(), e.pool, host, store.Transition{From: rackcloud.HostInspecting, To: rackcloud.HostAvailable})
	require.NoError(t, err)
	e.must(202, "POST", "/v1/boot/events", boot, []any{
		map[string]any{"time": at.Add(2 * time.Second).Format(time.RFC3339Nano), "mac": mac, "kind": "inventory", "data": inv},
	})
	require.Len(t, tasksOf(), 1)
}

// Heartbeats all update the host's last_heartbeat, but only the first of
// each boot (and one every heartbeatKeep) is kept on the timeline.
func TestHeartbeatsThinned(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	op := e.must(201, "POST", "/v1/tokens", e.admin, map[string]any{"name": "boot-hb", "role": "boot"})["secret"].(string)
	h := e.must(201, "POST", "/v1/hosts", e.admin, map[string]any{"name": "hb", "macs": []string{"52:54:00:cc:0b:01"}})
	t0 := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	hb := func(at time.Time, boot string) pxe.Event {
		return pxe.Event{Time: at, MAC: "52:54:00:cc:0b:01", Kind: pxe.EventHeartbeat, IP: "10.88.0.30",
			Data: json.RawMessage(`{"host_id":"` + h["id"].(string) + `","boot_id":"` + boot + `"}`)}
	}
	m := e.must(202, "POST", "/v1/boot/events", op, []pxe.Event{hb(t0, "b1"), hb(t0.Add(10*time.Second), "b1")})
	require.EqualValues(t, 2.0, m["accepted"], "thinned heartbeats are taken, not refused")
	e.must(202, "POST", "/v1/boot/events", op, []pxe.Event{hb(t0.Add(20*time.Second), "b1")})
	require.Equal(t, 1, e.count(`SELECT count(*) FROM boot_events WHERE host_id = $1 AND kind = 'heartbeat'`, h["id"]))
	e.must(202, "POST", "/v1/boot/events", op, []pxe.Event{hb(t0.Add(30*time.Second), "b2")})
	require.Equal(t, 2, e.count(`SELECT count(*) FROM boot_events WHERE host_id = $1 AND kind = 'heartbeat'`, h["id"]), "a new boot is kept")
	got := e.must(200, "GET", "/v1/hosts/"+h["id"].(string), e.admin, nil)
	at, err := time.Parse(time.RFC3339Nano, got["last_heartbeat"].(string))
	require.NoError(t, err)
	require.True(t, at.Equal(t0.Add(30*time.Second)), "last_heartbeat %v", at)
}
