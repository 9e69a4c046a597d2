package pxe

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/bootimg"
	"github.com/rackcloud/rackcloud/lab/qemu"
)

// TestBootBIOS: SeaBIOS with QEMU's iPXE ROM gets its script from DHCP
// (no TFTP), loads the real kernel and initramfs over HTTP and calls back.
func TestBootBIOS(t *testing.T) {
	t.Parallel()
	l := newLab(t, 71)
	s := l.start(l.config(), Deps{})
	mac := "52:54:00:71:00:01"
	m, start := l.boot("bios", mac, qemu.BIOS)
	cb := waitEvent(t, s, mac, EventCallback, 3*time.Minute, m)
	ctx, cancel := contextWithTimeout(30 * time.Second)
	defer cancel()
	require.NoError(t, m.WaitConsole(ctx, bootimg.CallbackMarker+" mac="+mac))
	evs := s.Timeline(mac)
	t.Logf("timeline:\n%s", formatTimeline(evs))
	t.Logf("BIOS boot times: %s", measure(evs, start))
	logInitLines(t, m)
	require.Contains(t, string(cb.Data), `"mac":"`+mac+`"`)
	require.Contains(t, string(cb.Data), ParamToken+"=REDACTED", "the image called back with its token, not in its body")
	for _, r := range []string{tokenMissing, tokenWrong, tokenReplayed} {
		require.Zero(t, counterValue(s.m.callbacksRefused.WithLabelValues(r)), r)
	}
}

// TestBootInventory: a server with 2 CPUs, 768 MiB, a blank virtio disk
// and DMI data boots the inspection image over the network (SeaBIOS);
// after the callback its agent reports the inventory with the boot's
// token, and the inventory event carries the VM's real facts.
func TestBootInventory(t *testing.T) {
	t.Parallel()
	l := newLab(t, 79)
	s := l.start(l.config(), Deps{})
	mac := "52:54:00:79:00:01"
	hw, err := net.ParseMAC(mac)
	require.NoError(t, err)
	m, _ := l.bootSpec(qemu.Spec{Name: "inventory", MAC: hw, CPUs: 2, MemoryMiB: 768, Serial: "SN-79",
		Disks: []qemu.Disk{{Path: filepath.Join(l.dir, "blank.img"), SizeMiB: 64}}})
	ev := waitEvent(t, s, mac, EventInventory, 4*time.Minute, m)
	ctx, cancel := contextWithTimeout(30 * time.Second)
	defer cancel()
	require.NoError(t, m.WaitConsole(ctx, bootimg.InventoryMarker+" mac="+mac))
	logInitLines(t, m)
	t.Logf("inventory: %s", ev.Data)
	inv := requireInventory(t, ev, mac, "bios")
	require.Equal(t, 2, inv.CPUs, "QEMU -smp 2")
	require.Equal(t, []rackcloud.InventoryDisk{{Name: "vda", SizeBytes: 64 << 20, Rotational: true}}, inv.Disks,
		"the blank virtio disk (virtio-blk says rotational)")
	require.Equal(t, "rackcloud-lab", inv.Vendor)
	require.Equal(t, "sim-2c", inv.Product)
	require.Equal(t, "SN-79", inv.Serial)
	for _, r := range []string{tokenMissing, tokenWrong, tokenReplayed} {
		require.Zero(t, counterValue(s.m.callbacksRefused.WithLabelValues(r)), r)
	}
}

// requireInventory checks what every inspection boot of a 512-768 MiB
// lab server reports: memory (QEMU -m minus what the kernel keeps), its
// NIC, its firmware.
func requireInventory(t *testing.T, ev Event, mac, firmware string) rackcloud.Inventory {
	t.Helper()
	var inv rackcloud.Inventory
	require.NoError(t, json.Unmarshal(ev.Data, &inv), string(ev.Data))
	require.Equal(t, firmware, inv.Firmware)
	require.GreaterOrEqual(t, inv.CPUs, 1)
	require.NotEmpty(t, inv.CPUModel)
	require.Greater(t, inv.MemoryMiB, int64(300), "QEMU -m less the kernel's reservations")
	require.LessOrEqual(t, inv.MemoryMiB, int64(768))
	var macs []string
	for _, n := range inv.NICs {
		macs = append(macs, n.MAC)
	}
	require.Contains(t, macs, mac, "the NIC it booted from")
	return inv
}

// TestBootUEFI: OVMF's own PXE loads snponly.efi over TFTP, which chains
// to the script over HTTP.
func TestBootUEFI(t *testing.T) {
	t.Parallel()
	l := newLab(t, 72)
	s := l.start(l.config(), Deps{})
	mac := "52:54:00:72:00:01"
	m, start := l.boot("uefi", mac, qemu.UEFI)
	waitEvent(t, s, mac, EventCallback, 4*time.Minute, m)
	evs := s.Timeline(mac)
	t.Logf("timeline:\n%s", formatTimeline(evs))
	t.Logf("UEFI boot times: %s", measure(evs, start))
	logInitLines(t, m)
	// OVMF aborts its size probe with a NUL-terminated message: the
	// event keeps the message, not the NUL.
	aborted := false
	for _, e := range evs {
		if e.Kind == EventTFTPError {
			aborted = true
			require.Equal(t, cleanText(e.Error, maxPeerText), e.Error)
			require.NotContains(t, e.Error, "\x00")
		}
	}
	require.True(t, aborted, "OVMF aborted its tsize probe")
	inv := requireInventory(t, waitEvent(t, s, mac, EventInventory, time.Minute, m), mac, "uefi")
	require.LessOrEqual(t, inv.MemoryMiB, int64(512))
}

// TestBootUEFIHTTP: OVMF with its PXE (TFTP) boot options turned off
// falls back to UEFI HTTP boot: it asks DHCP as an HTTPClient, gets the
// iPXE binary's URL, loads it over HTTP, and iPXE goes on as usual.
func TestBootUEFIHTTP(t *testing.T) {
	t.Parallel()
	l := newLab(t, 74)
	s := l.start(l.config(), Deps{})
	mac := "52:54:00:74:00:01"
	m, start := l.boot("uefi-http", mac, qemu.UEFI,
		"-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=n",
		"-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=n")
	waitEvent(t, s, mac, EventCallback, 4*time.Minute, m)
	evs := s.Timeline(mac)
	t.Logf("timeline:\n%s", formatTimeline(evs))
	t.Logf("UEFI HTTP boot times: %s", measure(evs, start))
	var firmware []Event
	for _, e := range evs {
		if e.Client == ClientUEFIHTTP {
			firmware = append(firmware, e)
		}
	}
	require.NotEmpty(t, firmware, "the firmware asked as a UEFI HTTP boot client")
	loaded := false
	for _, e := range evs {
		if e.Kind == EventHTTPFile && e.File == "/ipxe/snponly.efi" && e.Bytes > 0 && e.Error == "" {
			loaded = true
		}
	}
	require.True(t, loaded, "the firmware loaded iPXE over HTTP")
	for _, e := range evs {
		require.NotEqual(t, EventTFTPStart, e.Kind, "nothing went over TFTP")
	}
}

// TestBootTwoServersAtOnce: two BIOS servers boot on the same segment at
// the same time and each ends up with its own address and callback.
func TestBootTwoServersAtOnce(t *testing.T) {
	t.Parallel()
	l := newLab(t, 73)
	s := l.start(l.config(), Deps{})
	macs := []string{"52:54:00:73:00:01", "52:54:00:73:00:02"}
	var ms []*qemu.Machine
	var starts []time.Time
	for i, mac := range macs {
		m, start := l.boot(fmt.Sprintf("pair%d", i), mac, qemu.BIOS)
		ms, starts = append(ms, m), append(starts, start)
	}
	ips := map[string]string{}
	for i, mac := range macs {
		cb := waitEvent(t, s, mac, EventCallback, 4*time.Minute, ms[i])
		var body struct{ IP string }
		require.NoError(t, json.Unmarshal(cb.Data, &body))
		ips[body.IP] = mac
		t.Logf("%s boot times: %s", mac, measure(s.Timeline(mac), starts[i]))
	}
	require.Len(t, ips, 2, "each server has its own address: %v", ips)
	leases := s.Leases()
	require.Len(t, leases, 2)
	for _, ls := range leases {
		require.Equal(t, ls.MAC, ips[ls.IP.String()], "the lease file agrees with what the servers use")
	}
}

// TestProxyDHCPBesideDnsmasq: dnsmasq, on another machine of the segment
// (a second namespace), is the site's DHCP server and knows nothing about
// network boot; rackcloud runs as a proxyDHCP and the server still boots
// and calls back with an address from dnsmasq: under BIOS (iPXE takes the
// proxy's offer) and UEFI (OVMF asks the proxy again on port 4011, then
// loads snponly.efi over TFTP).
func TestProxyDHCPBesideDnsmasq(t *testing.T) {
	t.Parallel()
	requireBinaries(t, "dnsmasq")
	for _, tc := range []struct {
		fw    qemu.Firmware
		octet int
	}{{qemu.BIOS, 74}, {qemu.UEFI, 77}} {
		t.Run(string(tc.fw), func(t *testing.T) {
			t.Parallel()
			proxyBoot(t, tc.octet, tc.fw)
		})
	}
}

func proxyBoot(t *testing.T, octet int, fw qemu.Firmware) {
	l := newLab(t, octet)
	net := fmt.Sprintf("10.%d.0", octet)
	site := l.siteNet(netip.MustParsePrefix(net + ".2/24"))
	leaseFile := filepath.Join(l.dir, "dnsmasq.leases")
	l.startProcess(site, "dnsmasq.log", "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0",
		"--interface=vsite1", "--bind-interfaces", "--dhcp-range="+net+".100,"+net+".150,1h",
		"--dhcp-leasefile="+leaseFile, "--pid-file="+filepath.Join(l.dir, "dnsmasq.pid"),
		"--dhcp-authoritative", "--log-dhcp", "--log-facility=-")
	cfg := l.config()
	cfg.DHCPMode = DHCPProxy
	cfg.Subnet, cfg.RangeStart, cfg.RangeEnd, cfg.StateDir = netip.Prefix{}, netip.Addr{}, netip.Addr{}, ""
	s := l.start(cfg, Deps{})

	mac := fmt.Sprintf("52:54:00:%d:00:01", octet)
	m, start := l.boot("proxy-"+string(fw), mac, fw)
	cb := waitEvent(t, s, mac, EventCallback, 4*time.Minute, m)
	var body struct{ IP string }
	require.NoError(t, json.Unmarshal(cb.Data, &body))
	ip := netip.MustParseAddr(body.IP)
	require.True(t, netip.MustParseAddr(net+".100").Compare(ip) <= 0 && ip.Compare(netip.MustParseAddr(net+".150")) <= 0,
		"address %v comes from dnsmasq's range", ip)
	require.Empty(t, s.Leases(), "a proxy hands out no address")
	evs := s.Timeline(mac)
	t.Logf("timeline:\n%s", formatTimeline(evs))
	t.Logf("proxyDHCP %s boot times: %s", fw, measure(evs, start))
	var proxied bool
	for _, e := range evs {
		proxied = proxied || (e.Kind == EventDHCPOffer && e.Detail == "proxyDHCP" && e.Client == ClientIPXE)
	}
	require.True(t, proxied, "iPXE's boot information came from the proxy")
	leases, err := os.ReadFile(leaseFile)
	require.NoError(t, err)
	require.Contains(t, string(leases), mac, "dnsmasq leased the address")
}

// TestBootWhileControlPlaneDown: the API answers the first lookup of a
// known, provisioning host and then stops; the boot service keeps booting
// the host from its cache (the installer, not discovery), and sends the
// boot events once the API is back.
func TestBootWhileControlPlaneDown(t *testing.T) {
	t.Parallel()
	l := newLab(t, 75)
	api := startFakeAPI(t)
	mac := "52:54:00:75:00:01"
	api.set(Profile{MAC: mac, HostID: "h-75", State: rackcloud.HostProvisioning, Version: 9,
		Boot: rackcloud.BootProfile{Kernel: "inspect/vmlinuz", Initrd: "inspect/initrd.img",
			Cmdline: "console=ttyS0 quiet rackcloud.role=installer"}})
	api.mu.Lock()
	api.stopAfter = 1 // the control plane dies right after answering once
	api.mu.Unlock()
	cfg := l.config()
	client, err := NewAPIClient(APIConfig{BaseURL: api.URL(), CacheFile: filepath.Join(cfg.StateDir, "profiles.json"),
		Timeout: time.Second, Retry: 200 * time.Millisecond}, testLogger(t))
	require.NoError(t, err)
	s := l.start(cfg, Deps{Profiles: client, Events: client})

	m, start := l.boot("cpdown", mac, qemu.BIOS)
	cb := waitEvent(t, s, mac, EventCallback, 4*time.Minute, m)
	evs := s.Timeline(mac)
	t.Logf("timeline:\n%s", formatTimeline(evs))
	t.Logf("boot times with the control plane down: %s", measure(evs, start))
	var script Event
	for _, e := range evs {
		if e.Kind == EventHTTPScript {
			script = e
		}
	}
	require.Equal(t, rackcloud.HostProvisioning, script.State, "the known host boots its installer, not discovery")
	require.True(t, script.Cached, "from the cache: the API was down")
	require.False(t, client.Reachable())
	var body struct{ Cmdline string }
	require.NoError(t, json.Unmarshal(cb.Data, &body))
	require.Contains(t, body.Cmdline, "rackcloud.role=installer")
	require.Contains(t, body.Cmdline, "rackcloud.state=provisioning")
	require.False(t, containsKind(api.kinds(mac), EventCallback), "the stopped API got nothing after the first lookup")

	api.restart()
	pollUntil(t, 30*time.Second, "the boot events reach the API", func() bool {
		return containsKind(api.kinds(mac), EventCallback)
	})
	kinds := api.kinds(mac)
	require.Equal(t, EventDHCPDiscover, kinds[0], "in order, from the first")
	require.True(t, client.Reachable())
}
