package pxe

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// TestRouterAdvertisements listens on a veth plugged into the lab bridge,
// solicits a router, and checks the advertisement iPXE will see.
func TestRouterAdvertisements(t *testing.T) {
	t.Parallel()
	l := newLab(t, 76)
	l.addVeth("vra0", "vra1", "")
	cfg := l.config()
	cfg.RAInterval = time.Hour // only the first RA and answers to solicitations
	s := l.start(cfg, Deps{})

	var (
		c      *icmp.PacketConn
		listen *net.Interface
		bridge *net.Interface
	)
	require.NoError(t, inNetns(l.net.Path(), func() error {
		var err error
		if listen, err = net.InterfaceByName("vra1"); err != nil {
			return err
		}
		if bridge, err = net.InterfaceByName(l.net.Bridge); err != nil {
			return err
		}
		c, err = icmp.ListenPacket("ip6:ipv6-icmp", "::")
		return err
	}))
	defer c.Close()
	pc := c.IPv6PacketConn()
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterAdvertisement)
	require.NoError(t, pc.SetICMPFilter(&f))
	require.NoError(t, pc.SetControlMessage(ipv6.FlagInterface|ipv6.FlagHopLimit, true))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rs := []byte{byte(ipv6.ICMPTypeRouterSolicitation), 0, 0, 0, 0, 0, 0, 0}
	buf := make([]byte, 1500)
	for {
		// Solicit (the first sends may fail while addresses are tentative).
		_, _ = pc.WriteTo(rs, &ipv6.ControlMessage{IfIndex: listen.Index, HopLimit: 255},
			&net.IPAddr{IP: net.ParseIP("ff02::2"), Zone: listen.Name})
		require.NoError(t, c.SetReadDeadline(time.Now().Add(500*time.Millisecond)))
		n, cm, src, err := pc.ReadFrom(buf)
		if err == nil && cm != nil && cm.IfIndex == listen.Index && n >= 16 && buf[0] == byte(ipv6.ICMPTypeRouterAdvertisement) {
			srcIP, _ := netip.AddrFromSlice(src.(*net.IPAddr).IP)
			require.True(t, srcIP.IsLinkLocalUnicast(), "RAs come from a link-local address, got %v", srcIP)
			require.Equal(t, 255, cm.HopLimit, "hop limit 255 or hosts drop the RA")
			checkRA(t, buf[:n], bridge.HardwareAddr, netip.MustParsePrefix("fd00:76::/64"))
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no router advertisement on the segment (sent counter %v)", counterValue(s.m.raSent))
		}
	}
	pollUntil(t, 5*time.Second, "the RA counted", func() bool { return counterValue(s.m.raSent) >= 1 })
}

func checkRA(t *testing.T, b []byte, mac net.HardwareAddr, prefix netip.Prefix) {
	t.Helper()
	require.Equal(t, byte(0), b[5], "no M/O flags: nobody starts DHCPv6")
	require.Equal(t, uint16(0), binary.BigEndian.Uint16(b[6:]), "router lifetime 0: not a default router")
	var sawMAC, sawPrefix bool
	for o := b[16:]; len(o) >= 8; {
		l := int(o[1]) * 8
		require.Positive(t, l)
		require.LessOrEqual(t, l, len(o))
		switch o[0] {
		case 1:
			require.Equal(t, []byte(mac), o[2:8])
			sawMAC = true
		case 3:
			a, _ := netip.AddrFromSlice(o[16:32])
			require.Equal(t, prefix, netip.PrefixFrom(a, int(o[2])))
			require.Equal(t, byte(0xc0), o[3], "on-link and autonomous")
			sawPrefix = true
		}
		o = o[l:]
	}
	require.True(t, sawMAC, "source link-layer address option")
	require.True(t, sawPrefix, "prefix information option")
}

func TestBuildRAWithoutPrefixes(t *testing.T) {
	b := buildRA(net.HardwareAddr{2, 0, 0, 0, 0, 1}, nil)
	require.Len(t, b, 24)
	require.Equal(t, byte(134), b[0])
	require.Equal(t, byte(64), b[4])
}
