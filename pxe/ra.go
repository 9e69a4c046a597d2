package pxe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// Router advertisements. iPXE waits about 13 s for IPv6 autoconfiguration
// when no router speaks on the segment (LAB.md); an RA, even one that
// makes no one use us as a router (lifetime 0), ends the wait at once. The
// advertisement carries the interface's /64 prefixes (on-link,
// autonomous) and no M/O flags, so no client starts DHCPv6.
type raSender struct {
	conn     *icmp.PacketConn
	pc       *ipv6.PacketConn
	ifi      *net.Interface
	netns    string
	interval time.Duration
	sent     func()
	log      interface {
		Debug(string, ...any)
	}
	mu   sync.Mutex
	last time.Time
}

var allNodes = &net.IPAddr{IP: net.ParseIP("ff02::1")}

// openRA opens a raw ICMPv6 socket for ifname; call it inside the
// service's network namespace (netns names it for the sending goroutines).
func openRA(ifname, netns string, interval time.Duration) (*raSender, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("router advertisements on %s: %w", ifname, err)
	}
	c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, fmt.Errorf("router advertisements: raw ICMPv6 socket: %w", err)
	}
	pc := c.IPv6PacketConn()
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	steps := []error{
		pc.SetICMPFilter(&f),
		pc.SetControlMessage(ipv6.FlagInterface, true),
		pc.SetMulticastInterface(ifi),
		pc.SetMulticastHopLimit(255),
		pc.SetHopLimit(255),
		pc.SetMulticastLoopback(false),
		pc.JoinGroup(ifi, &net.IPAddr{IP: net.ParseIP("ff02::2")}),
	}
	if err := errors.Join(steps...); err != nil {
		c.Close()
		return nil, fmt.Errorf("router advertisements on %s: %w", ifname, err)
	}
	return &raSender{conn: c, pc: pc, ifi: ifi, netns: netns, interval: interval}, nil
}

// addresses returns the interface's link-local address (the only valid
// source of an RA) and its /64 prefixes. It reads the interface now: the
// link-local address appears only once the bridge has a port up.
func (r *raSender) addresses() (net.IP, []netip.Prefix, error) {
	ifi, err := net.InterfaceByIndex(r.ifi.Index)
	if err != nil {
		return nil, nil, err
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, nil, err
	}
	var ll net.IP
	var prefixes []netip.Prefix
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, _ := netip.AddrFromSlice(ipn.IP)
		ones, _ := ipn.Mask.Size()
		switch {
		case !ip.Is6() || ip.Is4In6():
		case ip.IsLinkLocalUnicast():
			ll = ipn.IP
		case ones == 64:
			prefixes = append(prefixes, netip.PrefixFrom(ip, 64).Masked())
		}
	}
	if ll == nil {
		return nil, nil, errors.New("no link-local address yet")
	}
	return ll, prefixes, nil
}

// buildRA builds a router advertisement (RFC 4861 4.2) with the source
// link-layer address and one prefix-information option per prefix.
func buildRA(mac net.HardwareAddr, prefixes []netip.Prefix) []byte {
	b := make([]byte, 16, 16+8+32*len(prefixes))
	b[0] = byte(ipv6.ICMPTypeRouterAdvertisement)
	b[4] = 64 // current hop limit
	// flags (M, O) 0; router lifetime 0: not a default router.
	if len(mac) == 6 {
		b = append(b, 1, 1)
		b = append(b, mac...)
	}
	for _, p := range prefixes {
		o := make([]byte, 32)
		o[0], o[1], o[2], o[3] = 3, 4, byte(p.Bits()), 0xc0 // on-link, autonomous
		binary.BigEndian.PutUint32(o[4:], 86400)            // valid lifetime
		binary.BigEndian.PutUint32(o[8:], 14400)            // preferred lifetime
		a := p.Addr().As16()
		copy(o[16:], a[:])
		b = append(b, o...)
	}
	return b
}

func (r *raSender) send() {
	r.mu.Lock()
	// Answer a burst of solicitations once (RFC 4861 allows 3 s; iPXE
	// solicits a few times in its first seconds, so keep it short).
	if time.Since(r.last) < 200*time.Millisecond {
		r.mu.Unlock()
		return
	}
	r.last = time.Now()
	r.mu.Unlock()
	src, prefixes, err := r.addresses()
	if err != nil {
		r.log.Debug("router advertisement not sent", "err", err)
		return
	}
	cm := &ipv6.ControlMessage{IfIndex: r.ifi.Index, HopLimit: 255, Src: src}
	dst := &net.IPAddr{IP: allNodes.IP, Zone: r.ifi.Name}
	if _, err := r.pc.WriteTo(buildRA(r.ifi.HardwareAddr, prefixes), cm, dst); err != nil {
		// Typically the bridge's link-local address is still tentative
		// (DAD) right after a port came up; the next RS or tick retries.
		r.log.Debug("router advertisement not sent", "err", err)
		return
	}
	if r.sent != nil {
		r.sent()
	}
}

// run advertises every interval and answers router solicitations until ctx
// ends (the socket is closed by close). Its goroutines read the interface's
// addresses, so their threads move into the service's namespace.
func (r *raSender) run(ctx context.Context) {
	restore, err := lockThreadInNetns(r.netns)
	if err != nil {
		r.log.Debug("router advertisements stopped", "err", err)
		return
	}
	defer restore()
	go func() {
		restore, err := lockThreadInNetns(r.netns)
		if err != nil {
			return
		}
		defer restore()
		buf := make([]byte, 1500)
		for {
			n, cm, _, err := r.pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n > 0 && buf[0] == byte(ipv6.ICMPTypeRouterSolicitation) && (cm == nil || cm.IfIndex == r.ifi.Index) {
				r.send()
			}
		}
	}()
	r.send()
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.send()
		}
	}
}

func (r *raSender) close() error { return r.conn.Close() }
