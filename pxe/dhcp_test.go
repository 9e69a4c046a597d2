package pxe

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
)

// unitConfig is a full-mode config whose sockets are never opened.
func unitConfig(t testing.TB) Config {
	return Config{
		Interface: "br-unit", ServerIP: netip.MustParseAddr("10.9.0.1"),
		StateDir: t.TempDir(), Subnet: netip.MustParsePrefix("10.9.0.0/24"),
		RangeStart: netip.MustParseAddr("10.9.0.100"), RangeEnd: netip.MustParseAddr("10.9.0.102"),
		Router: netip.MustParseAddr("10.9.0.254"), DNS: []netip.Addr{netip.MustParseAddr("10.9.0.53")},
		AutoDiscovery: true, RAInterval: -1,
	}
}

func unitService(t testing.TB, cfg Config, profiles ProfileSource) *Service {
	t.Helper()
	s, err := New(cfg, Deps{Profiles: profiles})
	require.NoError(t, err)
	return s
}

func withMAC(mac net.HardwareAddr) dhcpv4.Modifier { return dhcpv4.WithHwAddr(mac) }

// dora runs DISCOVER, REQUEST against s and returns OFFER and ACK.
func dora(t *testing.T, s *Service, mac net.HardwareAddr, opts ...dhcpv4.Option) (*dhcpv4.DHCPv4, *dhcpv4.DHCPv4) {
	t.Helper()
	ctx := context.Background()
	d := discover(t, opts...)
	d.ClientHWAddr = mac
	offer, dst, _ := s.handleDHCP(ctx, d, &net.UDPAddr{IP: net.IPv4zero, Port: 68}, false)
	require.NotNil(t, offer, "no offer")
	require.Equal(t, dhcpv4.MessageTypeOffer, offer.MessageType())
	require.True(t, dst.IP.Equal(net.IPv4bcast))
	req, err := dhcpv4.NewRequestFromOffer(offer)
	require.NoError(t, err)
	for _, o := range opts {
		req.UpdateOption(o)
	}
	ack, _, _ := s.handleDHCP(ctx, req, &net.UDPAddr{IP: net.IPv4zero, Port: 68}, false)
	require.NotNil(t, ack, "no ack")
	return offer, ack
}

func TestFullDHCPExchange(t *testing.T) {
	s := unitService(t, unitConfig(t), nil)
	offer, ack := dora(t, s, testMAC, dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016"), arch(7))
	require.Equal(t, dhcpv4.MessageTypeAck, ack.MessageType())
	require.Equal(t, "10.9.0.100", offer.YourIPAddr.String())
	require.Equal(t, "10.9.0.100", ack.YourIPAddr.String())
	require.Equal(t, "snponly.efi", ack.BootFileName)
	require.Equal(t, "10.9.0.1", ack.ServerIPAddr.String())
	require.Equal(t, "10.9.0.1", ack.ServerIdentifier().String())
	require.Equal(t, "10.9.0.254", ack.Router()[0].String())
	require.Equal(t, "10.9.0.53", ack.DNS()[0].String())
	require.Equal(t, net.CIDRMask(24, 32), ack.SubnetMask())
	require.Equal(t, time.Hour, ack.IPAddressLeaseTime(0))
	require.False(t, ack.Options.Has(dhcpv4.OptionVendorSpecificInformation), "no option 43 to firmware (OVMF PXE-E21)")
	require.False(t, ack.Options.Has(optVendor), "a full server does not mark itself as a PXE proxy")

	leases := s.Leases()
	require.Len(t, leases, 1)
	require.Equal(t, testMAC.String(), leases[0].MAC)

	// iPXE on the same MAC: same address, the script URL, no-pxedhcp.
	_, ack2 := dora(t, s, testMAC, dhcpv4.OptUserClass("iPXE"), dhcpv4.OptGeneric(optIPXE, []byte{0x13, 1, 1}))
	require.Equal(t, "10.9.0.100", ack2.YourIPAddr.String())
	require.Equal(t, "http://10.9.0.1:8080/boot/52:54:00:aa:01:01.ipxe", ack2.BootFileName)
	sub, err := ParseEncapsulated(ack2.Options.Get(optIPXE))
	require.NoError(t, err)
	require.Equal(t, []byte{1}, sub[ipxeOptNoPXEDHCP])

	var kinds []EventKind
	for _, e := range s.Timeline(testMAC.String()) {
		kinds = append(kinds, e.Kind)
	}
	require.Equal(t, []EventKind{EventDHCPDiscover, EventDHCPOffer, EventDHCPRequest, EventDHCPAck,
		EventDHCPDiscover, EventDHCPOffer, EventDHCPRequest, EventDHCPAck}, kinds)
}

func TestFullDHCPBootFiles(t *testing.T) {
	tests := map[string]struct {
		opts   []dhcpv4.Option
		file   string
		vendor string
	}{
		"BIOS":      {opts: []dhcpv4.Option{dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001"), arch(0)}, file: "undionly.kpxe"},
		"UEFI":      {opts: []dhcpv4.Option{dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016"), arch(7)}, file: "snponly.efi"},
		"UEFI HTTP": {opts: []dhcpv4.Option{dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001"), arch(16)}, file: "http://10.9.0.1:8080/ipxe/snponly.efi", vendor: "HTTPClient"},
		"plain":     {opts: []dhcpv4.Option{dhcpv4.OptClassIdentifier("udhcp 1.35.0")}},
		"ARM64":     {opts: []dhcpv4.Option{dhcpv4.OptClassIdentifier("PXEClient:Arch:00011:UNDI:003000"), arch(11)}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := unitService(t, unitConfig(t), nil)
			_, ack := dora(t, s, testMAC, tc.opts...)
			require.Equal(t, dhcpv4.MessageTypeAck, ack.MessageType())
			require.Equal(t, tc.file, ack.BootFileName)
			require.Equal(t, tc.vendor, ack.ClassIdentifier())
			require.Equal(t, "10.9.0.100", ack.YourIPAddr.String(), "every client gets an address")
		})
	}
}

func TestFullDHCPRequests(t *testing.T) {
	ctx := context.Background()
	peer := &net.UDPAddr{IP: net.IPv4zero, Port: 68}
	request := func(mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		r, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), withMAC(mac)}, mods...)...)
		require.NoError(t, err)
		return r
	}
	other := net.HardwareAddr{0x52, 0x54, 0x00, 0xaa, 0x01, 0x02}

	t.Run("request for another server's offer is ignored", func(t *testing.T) {
		s := unitService(t, unitConfig(t), nil)
		resp, _, _ := s.handleDHCP(ctx, request(testMAC,
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.9.0.2"))),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.9.0.100")))), peer, false)
		require.Nil(t, resp)
	})
	t.Run("wrong network is NAKed", func(t *testing.T) {
		s := unitService(t, unitConfig(t), nil)
		resp, dst, _ := s.handleDHCP(ctx, request(testMAC,
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("192.168.1.5")))), peer, false)
		require.NotNil(t, resp)
		require.Equal(t, dhcpv4.MessageTypeNak, resp.MessageType())
		require.True(t, dst.IP.Equal(net.IPv4bcast))
	})
	t.Run("init-reboot into the pool is accepted", func(t *testing.T) {
		s := unitService(t, unitConfig(t), nil)
		resp, _, _ := s.handleDHCP(ctx, request(testMAC,
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.9.0.101")))), peer, false)
		require.Equal(t, dhcpv4.MessageTypeAck, resp.MessageType())
		require.Equal(t, "10.9.0.101", resp.YourIPAddr.String())
	})
	t.Run("address outside the pool is NAKed", func(t *testing.T) {
		s := unitService(t, unitConfig(t), nil)
		resp, _, _ := s.handleDHCP(ctx, request(testMAC,
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.9.0.50")))), peer, false)
		require.Equal(t, dhcpv4.MessageTypeNak, resp.MessageType())
	})
	t.Run("someone else's address is NAKed", func(t *testing.T) {
		s := unitService(t, unitConfig(t), nil)
		_, ack := dora(t, s, other)
		resp, _, _ := s.handleDHCP(ctx, request(testMAC,
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.9.0.1"))),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ack.YourIPAddr))), peer, false)
		require.Equal(t, dhcpv4.MessageTypeNak, resp.MessageType())
	})
	t.Run("renewal is unicast to the client", func(t *testing.T) {
		s := unitService(t, unitConfig(t), nil)
		_, ack := dora(t, s, testMAC)
		resp, dst, _ := s.handleDHCP(ctx, request(testMAC, dhcpv4.WithClientIP(ack.YourIPAddr)), peer, false)
		require.Equal(t, dhcpv4.MessageTypeAck, resp.MessageType())
		require.Equal(t, &net.UDPAddr{IP: ack.YourIPAddr.To4(), Port: 68}, dst)
	})
	t.Run("relayed discover goes back to the relay", func(t *testing.T) {
		s := unitService(t, unitConfig(t), nil)
		d := discover(t)
		d.GatewayIPAddr = net.ParseIP("10.9.0.7").To4()
		resp, dst, _ := s.handleDHCP(ctx, d, &net.UDPAddr{IP: net.ParseIP("10.9.0.7"), Port: 67}, false)
		require.Equal(t, dhcpv4.MessageTypeOffer, resp.MessageType())
		require.Equal(t, "10.9.0.7:67", dst.String())
		require.Equal(t, "10.9.0.7", resp.GatewayIPAddr.String())
	})
	t.Run("relay from a foreign network is dropped", func(t *testing.T) {
		s := unitService(t, unitConfig(t), nil)
		d := discover(t)
		d.GatewayIPAddr = net.ParseIP("172.16.0.1").To4()
		resp, _, _ := s.handleDHCP(ctx, d, &net.UDPAddr{IP: net.ParseIP("172.16.0.1"), Port: 67}, false)
		require.Nil(t, resp)
	})
	t.Run("pool exhaustion is silence, not a crash", func(t *testing.T) {
		s := unitService(t, unitConfig(t), nil)
		for i := byte(0); i < 3; i++ {
			dora(t, s, net.HardwareAddr{2, 0, 0, 0, 0, i})
		}
		d := discover(t)
		d.ClientHWAddr = net.HardwareAddr{2, 0, 0, 0, 0, 9}
		resp, _, _ := s.handleDHCP(ctx, d, peer, false)
		require.Nil(t, resp)
	})
	t.Run("release and decline", func(t *testing.T) {
		s := unitService(t, unitConfig(t), nil)
		_, ack := dora(t, s, testMAC)
		rel, err := dhcpv4.NewReleaseFromACK(ack)
		require.NoError(t, err)
		resp, _, _ := s.handleDHCP(ctx, rel, peer, false)
		require.Nil(t, resp)
		require.False(t, s.leases.Owns(testMAC.String(), netip.MustParseAddr(ack.YourIPAddr.String())))
		// The released MAC gets its old address back.
		_, ack = dora(t, s, testMAC)
		require.Equal(t, "10.9.0.100", ack.YourIPAddr.String())
		dec, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeDecline), withMAC(testMAC),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ack.YourIPAddr)))
		require.NoError(t, err)
		resp, _, _ = s.handleDHCP(ctx, dec, peer, false)
		require.Nil(t, resp)
		_, ack = dora(t, s, testMAC)
		require.Equal(t, "10.9.0.101", ack.YourIPAddr.String(), "a declined address is not offered again")
	})
	t.Run("malformed requests are dropped", func(t *testing.T) {
		s := unitService(t, unitConfig(t), nil)
		d := discover(t)
		d.OpCode = dhcpv4.OpcodeBootReply
		resp, _, _ := s.handleDHCP(ctx, d, peer, false)
		require.Nil(t, resp)
		d = discover(t)
		d.ClientHWAddr = net.HardwareAddr{1, 2, 3}
		resp, _, _ = s.handleDHCP(ctx, d, peer, false)
		require.Nil(t, resp)
		d = discover(t)
		d.Options.Del(dhcpv4.OptionDHCPMessageType) // BOOTP
		resp, _, _ = s.handleDHCP(ctx, d, peer, false)
		require.Nil(t, resp)
	})
}

func TestDHCPReservations(t *testing.T) {
	cfg := unitConfig(t)
	cfg.Reservations = map[string]netip.Addr{testMAC.String(): netip.MustParseAddr("10.9.0.20")}
	profiles := &StaticProfiles{}
	other := net.HardwareAddr{0x52, 0x54, 0x00, 0xaa, 0x01, 0x02}
	require.NoError(t, profiles.Set(Profile{MAC: other.String(), State: rackcloud.HostReady, Hostname: "node2",
		IPv4: netip.MustParseAddr("10.9.0.21")}))
	s := unitService(t, cfg, profiles)
	_, ack := dora(t, s, testMAC)
	require.Equal(t, "10.9.0.20", ack.YourIPAddr.String(), "config reservation")
	_, ack = dora(t, s, other)
	require.Equal(t, "10.9.0.21", ack.YourIPAddr.String(), "profile reservation")
	require.Equal(t, "node2", ack.HostName())
	// A third MAC never gets a reserved address, even asking for it.
	third := net.HardwareAddr{0x52, 0x54, 0x00, 0xaa, 0x01, 0x03}
	d := discover(t, dhcpv4.OptRequestedIPAddress(net.ParseIP("10.9.0.20")))
	d.ClientHWAddr = third
	offer, _, _ := s.handleDHCP(context.Background(), d, &net.UDPAddr{Port: 68}, false)
	require.Equal(t, "10.9.0.100", offer.YourIPAddr.String())
	req, err := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.9.0.20"))))
	require.NoError(t, err)
	nak, _, _ := s.handleDHCP(context.Background(), req, &net.UDPAddr{Port: 68}, false)
	require.Equal(t, dhcpv4.MessageTypeNak, nak.MessageType(), "and cannot take it by asking")
}

func TestProxyDHCP(t *testing.T) {
	ctx := context.Background()
	cfg := unitConfig(t)
	cfg.DHCPMode = DHCPProxy
	s := unitService(t, cfg, nil)
	peer := &net.UDPAddr{IP: net.IPv4zero, Port: 68}

	// Plain DHCP clients are the site server's business.
	resp, _, _ := s.handleDHCP(ctx, discover(t, dhcpv4.OptClassIdentifier("udhcp 1.35.0")), peer, false)
	require.Nil(t, resp)

	uefi := []dhcpv4.Option{dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016"), arch(7),
		dhcpv4.OptGeneric(optClientGUID, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})}
	offer, dst, _ := s.handleDHCP(ctx, discover(t, uefi...), peer, false)
	require.NotNil(t, offer)
	require.Equal(t, dhcpv4.MessageTypeOffer, offer.MessageType())
	require.True(t, offer.YourIPAddr.IsUnspecified(), "a proxy hands out no address")
	require.Equal(t, "PXEClient", offer.ClassIdentifier())
	require.Equal(t, "snponly.efi", offer.BootFileName)
	require.Equal(t, uefi[2].Value.ToBytes(), offer.Options.Get(optClientGUID))
	require.True(t, dst.IP.Equal(net.IPv4bcast))
	require.False(t, offer.Options.Has(dhcpv4.OptionIPAddressLeaseTime))

	// The site server's request on port 67 is not ours.
	req, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), withMAC(testMAC),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.ParseIP("10.9.0.2"))),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.9.0.150"))),
		dhcpv4.WithOption(uefi[0]), dhcpv4.WithOption(uefi[1]))
	require.NoError(t, err)
	resp, _, _ = s.handleDHCP(ctx, req, peer, false)
	require.Nil(t, resp)
	require.Equal(t, testMAC.String(), s.macForIP(netip.MustParseAddr("10.9.0.150")), "learns the address for TFTP/HTTP events")

	// The client asks the proxy on port 4011 and gets an ACK back to it.
	req4011, err := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest), withMAC(testMAC),
		dhcpv4.WithClientIP(net.ParseIP("10.9.0.150")), dhcpv4.WithOption(uefi[0]), dhcpv4.WithOption(uefi[1]))
	require.NoError(t, err)
	from := &net.UDPAddr{IP: net.ParseIP("10.9.0.150"), Port: 4011}
	ack, dst, _ := s.handleDHCP(ctx, req4011, from, true)
	require.NotNil(t, ack)
	require.Equal(t, dhcpv4.MessageTypeAck, ack.MessageType())
	require.Equal(t, from, dst)
	require.Equal(t, "snponly.efi", ack.BootFileName)
}

func TestLeasesPersist(t *testing.T) {
	cfg := unitConfig(t).WithDefaults()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { return now }
	dir := t.TempDir()
	l := newLeases(cfg, clock)
	require.NoError(t, l.open(dir))
	ip, err := l.Offer("52:54:00:00:00:01", netip.Addr{}, netip.Addr{})
	require.NoError(t, err)
	_, seq, err := l.Bind("52:54:00:00:00:01", ip, netip.Addr{}, "n1", time.Hour)
	require.NoError(t, err)

	// The ACK waits for the disk.
	acked := false
	l.whenDurable(seq, func() { acked = true })
	require.False(t, acked, "not on disk yet")
	require.NoError(t, l.flush(false))
	require.True(t, acked, "released by the flush")
	journal, err := os.ReadFile(filepath.Join(dir, journalName))
	require.NoError(t, err)
	require.Contains(t, string(journal), `"op":"bind"`)

	// A crash (no close): the journal alone brings the lease back, and a
	// line cut short by the crash is ignored.
	f, err := os.OpenFile(filepath.Join(dir, journalName), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"op":"bind","mac":"52:54:00:00:00:09","ip":"10.9.0.1`)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	l2 := newLeases(cfg, clock)
	require.NoError(t, l2.open(dir))
	require.Equal(t, l.all(), l2.all())
	require.True(t, l2.Owns("52:54:00:00:00:01", ip))
	// The restarted server does not give the address to someone else.
	ip2, err := l2.Offer("52:54:00:00:00:02", netip.Addr{}, ip)
	require.NoError(t, err)
	require.NotEqual(t, ip, ip2)
	l2.Release("52:54:00:00:00:01", ip)
	require.NoError(t, l2.close())
	snap, err := os.ReadFile(filepath.Join(dir, snapshotName))
	require.NoError(t, err)
	require.Contains(t, string(snap), `"52:54:00:00:00:01"`)
	st, err := os.Stat(filepath.Join(dir, journalName))
	require.NoError(t, err)
	require.Zero(t, st.Size(), "close compacts the journal into the snapshot")

	// Expired leases are reclaimed when the pool runs out.
	later := now.Add(2 * time.Hour)
	l3 := newLeases(cfg, func() time.Time { return later })
	require.NoError(t, l3.open(dir))
	for i := byte(2); i < 5; i++ {
		_, err := l3.Offer(net.HardwareAddr{0x52, 0x54, 0, 0, 0, i}.String(), netip.Addr{}, netip.Addr{})
		require.NoError(t, err, "offer %d", i)
	}
	require.NoError(t, l3.close())
}

func TestLeaseJournalCompacts(t *testing.T) {
	cfg := unitConfig(t)
	cfg.RangeStart, cfg.RangeEnd = netip.MustParseAddr("10.9.0.10"), netip.MustParseAddr("10.9.0.200")
	dir := t.TempDir()
	l := newLeases(cfg.WithDefaults(), time.Now)
	require.NoError(t, l.open(dir))
	mac := "52:54:00:00:00:01"
	for i := 0; i < compactMinimum+10; i++ {
		ip, err := l.Offer(mac, netip.Addr{}, netip.Addr{})
		require.NoError(t, err)
		_, _, err = l.Bind(mac, ip, netip.Addr{}, "", time.Hour)
		require.NoError(t, err)
		if i%100 == 0 {
			require.NoError(t, l.flush(false))
		}
	}
	require.NoError(t, l.flush(false))
	l.mu.Lock()
	lines := l.lines
	l.mu.Unlock()
	require.Less(t, lines, compactMinimum, "the journal was folded into a snapshot")
	l2 := newLeases(cfg.WithDefaults(), time.Now)
	require.NoError(t, l2.open(dir))
	require.Equal(t, l.all(), l2.all())
}

func TestCorruptLeaseJournalStopsStartAndIsKept(t *testing.T) {
	cfg := unitConfig(t)
	bad := "{\"op\":\"bind\",\"mac\":\"52:54:00:00:00:01\",\"ip\":\"10.9.0.100\",\"expires\":\"2030-01-01T00:00:00Z\"}\nGARBAGE\n"
	file := filepath.Join(cfg.StateDir, journalName)
	require.NoError(t, os.WriteFile(file, []byte(bad), 0o644))
	s := unitService(t, cfg, nil)
	err := s.Start(context.Background())
	require.ErrorContains(t, err, "line 2 is corrupt")
	b, rerr := os.ReadFile(file)
	require.NoError(t, rerr)
	require.Equal(t, bad, string(b))
	require.NoError(t, s.Stop())
}

func TestCorruptLeaseFileStopsStartAndIsKept(t *testing.T) {
	cfg := unitConfig(t)
	file := filepath.Join(cfg.StateDir, snapshotName)
	require.NoError(t, os.WriteFile(file, []byte(`{"version":1,"leases":[{"mac":`), 0o644))
	s := unitService(t, cfg, nil)
	err := s.Start(context.Background())
	require.ErrorContains(t, err, "corrupt")
	b, rerr := os.ReadFile(file)
	require.NoError(t, rerr)
	require.Equal(t, `{"version":1,"leases":[{"mac":`, string(b), "the operator's file is left alone")
	require.NoError(t, s.Stop())
}

func TestConfigValidation(t *testing.T) {
	_, err := New(Config{}, Deps{})
	require.ErrorIs(t, err, rackcloud.ErrInvalid)
	for _, want := range []string{"server IP", "subnet", "state directory", "interface"} {
		require.ErrorContains(t, err, want)
	}
	cfg := unitConfig(t)
	cfg.Reservations = map[string]netip.Addr{"52:54:00:AA:01:01": netip.MustParseAddr("10.10.0.1")}
	cfg.RangeEnd = netip.MustParseAddr("10.9.0.1")
	_, err = New(cfg, Deps{})
	require.ErrorIs(t, err, rackcloud.ErrInvalid)
	require.ErrorContains(t, err, "outside subnet")
	require.ErrorContains(t, err, "lower-case colon MAC")
	require.ErrorContains(t, err, "ordered range")
	cfg = unitConfig(t)
	cfg.DHCPMode = "relay"
	_, err = New(cfg, Deps{})
	require.ErrorContains(t, err, `DHCP mode "relay"`)
	// An IPv6 subnet is refused plainly, not a panic while defaulting.
	cfg = unitConfig(t)
	cfg.Subnet = netip.MustParsePrefix("fd00:77::/64")
	cfg.RangeStart, cfg.RangeEnd = netip.Addr{}, netip.Addr{}
	_, err = New(cfg, Deps{})
	require.ErrorIs(t, err, rackcloud.ErrInvalid)
	require.ErrorContains(t, err, "IPv4 subnet")
}
