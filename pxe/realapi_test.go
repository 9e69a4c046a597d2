package pxe

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/api"
	"github.com/rackcloud/rackcloud/lab/netns"
	"github.com/rackcloud/rackcloud/lab/pgtest"
	"github.com/rackcloud/rackcloud/store"
)

// realAPI is the control plane itself: the api package over a fresh
// PostgreSQL database (lab/pgtest), on a loopback HTTP server.
type realAPI struct {
	t     *testing.T
	srv   *httptest.Server
	admin string // an admin token
}

func startRealAPI(t *testing.T) *realAPI {
	t.Helper()
	pool := pgtest.DB(t)
	a := api.New(api.Deps{Pool: pool, Logger: testLogger(t).With("component", "api"), Registerer: prometheus.NewRegistry()})
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	_, secret, err := store.Bootstrap(context.Background(), pool, store.BootstrapOptions{})
	require.NoError(t, err)
	return &realAPI{t: t, srv: srv, admin: secret}
}

// client is the boot service's API client, polling fast.
func (a *realAPI) client(cfg APIConfig) *APIClient {
	a.t.Helper()
	cfg.BaseURL, cfg.Token = a.srv.URL, a.admin
	cfg.Timeout = 5 * time.Second
	cfg.Retry = cmp.Or(cfg.Retry, 50*time.Millisecond)
	cfg.RetryMax = cmp.Or(cfg.RetryMax, 200*time.Millisecond)
	cfg.Refresh = time.Hour
	c, err := NewAPIClient(cfg, testLogger(a.t).With("component", "pxe-api"))
	require.NoError(a.t, err)
	return c
}

// events returns what the API stored for mac (every MAC when empty).
func (a *realAPI) events(mac string) []Event {
	a.t.Helper()
	u := a.srv.URL + "/v1/boot/events?limit=1000"
	if mac != "" {
		u += "&mac=" + mac
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	require.NoError(a.t, err)
	req.Header.Set("Authorization", "Bearer "+a.admin)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(a.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(a.t, err)
	require.Equal(a.t, http.StatusOK, resp.StatusCode, string(b))
	var page struct{ Items []Event }
	require.NoError(a.t, json.Unmarshal(b, &page), string(b))
	return page.Items
}

// runClient runs c until the test ends.
func runClient(t *testing.T, c *APIClient) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// TestTFTPAbortWithNULThenNewHostDiscovered is issue 10's first defect
// end to end: UEFI firmware aborts its TFTP size probe with an error
// packet whose message ends in a NUL; the error reaches the real API (and
// PostgreSQL) as clean text, and a PXE client that comes next, with a new
// MAC, is still discovered as a host. Before the fix the NUL made the API
// answer 500 and blocked every later event.
func TestTFTPAbortWithNULThenNewHostDiscovered(t *testing.T) {
	t.Parallel()
	l := newLab(t, 78)
	a := startRealAPI(t)
	const (
		uefiMAC = "52:54:00:78:00:01"
		newMAC  = "52:54:00:78:00:02"
	)
	uefiIP := netip.MustParseAddr("10.78.0.21")
	root, _, _ := tftpRoot(t)
	cfg := Config{
		Interface: l.net.Bridge, Netns: l.net.Path(), ServerIP: l.server, StateDir: filepath.Join(l.dir, "state"),
		Subnet: l.prefix, RangeStart: netip.MustParseAddr("10.78.0.100"), RangeEnd: netip.MustParseAddr("10.78.0.150"),
		Reservations: map[string]netip.Addr{uefiMAC: uefiIP}, TFTPRoot: root, AutoDiscovery: true, RAInterval: -1,
		TFTPTimeout: time.Second,
	}
	api := a.client(APIConfig{CacheFile: filepath.Join(cfg.StateDir, "profiles.json")})
	s := l.start(cfg, Deps{Profiles: api, Events: api})

	// The clients: another machine on the segment (a second namespace
	// linked to the bridge) with the UEFI node's reserved address.
	client := l.siteNet(netip.PrefixFrom(uefiIP, 24))
	var dhcpConn, tftpConn *net.UDPConn
	require.NoError(t, inNetns(netns.Path(client), func() error {
		var err error
		if dhcpConn, err = server4.NewIPv4UDPConn("vsite1", &net.UDPAddr{Port: dhcpv4.ClientPort}); err != nil {
			return err
		}
		tftpConn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: uefiIP.AsSlice()})
		return err
	}))
	defer dhcpConn.Close()
	defer tftpConn.Close()

	// The UEFI firmware asks DHCP (its address is reserved), then probes
	// snponly's size over TFTP and aborts as OVMF does: error 8, with the
	// NUL-terminated message.
	sendDiscover(t, s, dhcpConn, uefiMAC, iana.EFI_X86_64)
	server := net.UDPAddrFromAddrPort(s.TFTPAddr())
	rrq := []byte{0, 1}
	for _, f := range []string{"boot.bin", "octet", "tsize", "0", "blksize", "1468"} {
		rrq = append(append(rrq, f...), 0)
	}
	_, err := tftpConn.WriteToUDP(rrq, server)
	require.NoError(t, err)
	buf := make([]byte, 2048)
	require.NoError(t, tftpConn.SetReadDeadline(time.Now().Add(10*time.Second)))
	n, from, err := tftpConn.ReadFromUDP(buf)
	require.NoError(t, err)
	require.Equal(t, uint16(6), binary.BigEndian.Uint16(buf[:n]), "OACK")
	require.Contains(t, string(buf[:n]), "tsize\x00")
	_, err = tftpConn.WriteToUDP(append([]byte{0, 5, 0, 8}, "User aborted the transfer\x00"...), from)
	require.NoError(t, err)
	abort := waitEvent(t, s, uefiMAC, EventTFTPError, 30*time.Second, nil)
	require.Contains(t, abort.Error, "User aborted the transfer")

	// Then a new server PXE-boots: the control plane must learn of it.
	sendDiscover(t, s, dhcpConn, newMAC, iana.INTEL_X86PC)
	pollUntil(t, 60*time.Second, "the new PXE client discovered as a host", func() bool {
		p, err := api.Profile(context.Background(), newMAC)
		return err == nil && !p.Cached && p.State == rackcloud.HostDiscovered
	})
	var stored []Event
	for _, e := range a.events(uefiMAC) {
		if e.Kind == EventTFTPError {
			stored = append(stored, e)
		}
	}
	require.Len(t, stored, 1, "the abort reached the API")
	require.True(t, strings.HasSuffix(stored[0].Error, "User aborted the transfer"), "%q", stored[0].Error)
	require.Equal(t, "client aborted after option negotiation (UEFI size probe)", stored[0].Detail)
	for _, reason := range []string{rejectInvalid, rejectTooLarge, rejectRefused, rejectServerError} {
		require.Zero(t, counterValue(api.m.eventsRejected.WithLabelValues(reason)),
			"clean at the source: nothing had to be dropped (%s)", reason)
	}
}

// sendDiscover broadcasts a PXE firmware's DHCPDISCOVER for mac, again
// every half second (as firmware retransmits: the new link may still drop
// the first) until s has offered it an address.
func sendDiscover(t *testing.T, s *Service, conn *net.UDPConn, mac string, arch iana.Arch) {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	require.NoError(t, err)
	d, err := dhcpv4.NewDiscovery(hw,
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(fmt.Sprintf("PXEClient:Arch:%05d:UNDI:003016", arch))),
		dhcpv4.WithOption(dhcpv4.OptClientArch(arch)))
	require.NoError(t, err)
	offered := func() bool {
		for _, e := range s.Timeline(mac) {
			if e.Kind == EventDHCPOffer {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(30 * time.Second)
	for !offered() {
		require.True(t, time.Now().Before(deadline), "no DHCP offer for %s within 30s", mac)
		_, err = conn.WriteToUDP(d.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort})
		require.NoError(t, err)
		pollUntilOr(500*time.Millisecond, offered)
	}
}

// pollUntilOr polls cond for up to d and says whether it came true.
func pollUntilOr(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// TestSpoolWithPoisonedBatchAtStart: a boot service restarted with a spool
// that holds events the API refuses (written by a version that did not
// clean its text: a NUL in an error, invalid UTF-8 in a file name; and an
// event with a state the API does not know) mixed with good ones delivers
// the good ones, in order, to the real API, counts the bad ones in
// rackcloud_boot_events_rejected_total, and removes the spool.
func TestSpoolWithPoisonedBatchAtStart(t *testing.T) {
	t.Parallel()
	a := startRealAPI(t)
	dir := t.TempDir()
	cache := filepath.Join(dir, "profiles.json")
	t0 := time.Now().UTC().Add(-time.Minute).Truncate(time.Millisecond)
	ev := func(i int, mac string, kind EventKind, mutate func(*Event)) Event {
		e := Event{Time: t0.Add(time.Duration(i) * time.Millisecond), MAC: mac, Kind: kind, Client: ClientUEFI}
		if mutate != nil {
			mutate(&e)
		}
		return e
	}
	const macA, macB = "52:54:00:79:00:01", "52:54:00:79:00:02"
	spooled := []Event{
		ev(0, macA, EventDHCPDiscover, nil),
		ev(1, macA, EventTFTPError, func(e *Event) { e.Error = "code=8, error: User aborted the transfer\x00" }),
		ev(2, macA, EventTFTPStart, func(e *Event) { e.File = "snponly.efi" }),
		ev(3, macA, EventCallback, func(e *Event) { e.Data = json.RawMessage(`{"cmdline":"x\u0000y"}`) }),
		ev(4, macA, EventHTTPScript, func(e *Event) { e.State = "booting" }),
		ev(5, macB, EventDHCPDiscover, nil),
		ev(6, macA, EventTFTPDone, func(e *Event) { e.File = "snponly.efi" }),
	}
	b, err := json.Marshal(spooled)
	require.NoError(t, err)
	require.Contains(t, string(b), `\u0000`, "the spool holds the NUL as the old version wrote it")
	spool := cache + ".events"
	require.NoError(t, os.WriteFile(spool, b, 0o644))

	reg := prometheus.NewRegistry()
	c := a.client(APIConfig{CacheFile: cache, Registerer: reg})
	require.Equal(t, len(spooled), c.Pending())
	runClient(t, c)
	pollUntil(t, 60*time.Second, "the spool drained", func() bool { return c.Pending() == 0 })
	pollUntil(t, 10*time.Second, "the spool removed", func() bool {
		_, err := os.Stat(spool)
		return os.IsNotExist(err)
	})

	var got []string
	for _, e := range a.events("") {
		got = append(got, e.MAC+" "+string(e.Kind))
	}
	require.Equal(t, []string{macA + " dhcp.discover", macA + " tftp.start", macB + " dhcp.discover", macA + " tftp.done"}, got,
		"the good events, in order")
	rejected := func(reason string) float64 { return counterValue(c.m.eventsRejected.WithLabelValues(reason)) }
	require.GreaterOrEqual(t, rejected(rejectInvalid), 1.0, "the unknown state is refused with 422")
	require.Equal(t, 3.0, rejected(rejectInvalid)+rejected(rejectServerError),
		"three bad events dropped (the NULs: 500 from an API that does not check them, 422 from one that does)")
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	require.Contains(t, names, "rackcloud_boot_events_rejected_total", "on the injected registerer")
	_, err = c.Profile(context.Background(), macB)
	require.NoError(t, err, "the good events made the second MAC a host")
}
