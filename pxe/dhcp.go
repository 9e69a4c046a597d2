package pxe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// dhcpPacket is one received packet waiting for a worker.
type dhcpPacket struct {
	req       *dhcpv4.DHCPv4
	peer      *net.UDPAddr
	proxyPort bool
	conn      *net.UDPConn
}

const (
	dhcpWorkers = 8
	dhcpBacklog = 4096
	clientPort  = dhcpv4.ClientPort
)

// serveDHCP reads packets from conn until it is closed and hands them to
// the workers; a full backlog drops packets (clients retransmit).
func (s *Service) serveDHCP(conn *net.UDPConn, proxyPort bool, work chan<- dhcpPacket) {
	buf := make([]byte, 65536)
	for {
		n, peer, err := conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("dhcp read", "err", err)
			continue
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			s.m.dhcpDropped.WithLabelValues("malformed").Inc()
			s.log.Debug("dhcp: malformed packet", "peer", peer, "err", cleanText(err.Error(), maxPeerText))
			continue
		}
		select {
		case work <- dhcpPacket{req: req, peer: peer, proxyPort: proxyPort, conn: conn}:
		default:
			s.m.dhcpDropped.WithLabelValues("backlog").Inc()
		}
	}
}

func (s *Service) dhcpWorker(ctx context.Context, work <-chan dhcpPacket) {
	for p := range work {
		resp, dst, seq := s.handleDHCP(ctx, p.req, p.peer, p.proxyPort)
		if resp == nil {
			continue
		}
		send := func() {
			if _, err := p.conn.WriteToUDP(resp.ToBytes(), dst); err != nil {
				s.log.Warn("dhcp send", "to", dst, "type", resp.MessageType(), "err", err)
				s.m.dhcpDropped.WithLabelValues("send").Inc()
				return
			}
			s.m.dhcpSent.WithLabelValues(resp.MessageType().String()).Inc()
		}
		if seq > 0 {
			// An ACK leaves only once its lease is on disk.
			s.leases.whenDurable(seq, send)
			continue
		}
		send()
	}
}

// handleDHCP decides the answer to one request: the reply and where to send
// it, or nil for silence, and the lease change the reply must wait for (0
// for none). It records the boot events of the exchange.
func (s *Service) handleDHCP(ctx context.Context, req *dhcpv4.DHCPv4, peer *net.UDPAddr, proxyPort bool) (*dhcpv4.DHCPv4, *net.UDPAddr, uint64) {
	if req.OpCode != dhcpv4.OpcodeBootRequest || req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		s.m.dhcpDropped.WithLabelValues("not_ethernet_request").Inc()
		return nil, nil, 0
	}
	mt := req.MessageType()
	if mt == dhcpv4.MessageTypeNone {
		s.m.dhcpDropped.WithLabelValues("bootp").Inc()
		return nil, nil, 0
	}
	if gi, ok := netip.AddrFromSlice(req.GatewayIPAddr.To4()); ok && !gi.IsUnspecified() && s.cfg.DHCPMode == DHCPFull && !s.cfg.Subnet.Contains(gi) {
		s.m.dhcpDropped.WithLabelValues("foreign_relay").Inc()
		return nil, nil, 0
	}
	mac := req.ClientHWAddr.String()
	client := Classify(req)
	s.m.dhcpReceived.WithLabelValues(mt.String(), string(client.Kind)).Inc()
	if kind, ok := receivedEvent[mt]; ok {
		e := Event{MAC: mac, Kind: kind, Client: client.Kind}
		if ip := requestedIP(req); ip.IsValid() {
			e.IP = ip.String()
		}
		if proxyPort {
			e.Detail = "proxyDHCP port"
		}
		s.record(e)
	}
	if s.cfg.DHCPMode == DHCPProxy {
		resp, dst := s.handleProxy(ctx, req, peer, proxyPort, mac, client)
		return resp, dst, 0
	}
	if proxyPort {
		return nil, nil, 0
	}
	return s.handleFull(ctx, req, mac, client)
}

var receivedEvent = map[dhcpv4.MessageType]EventKind{
	dhcpv4.MessageTypeDiscover: EventDHCPDiscover,
	dhcpv4.MessageTypeRequest:  EventDHCPRequest,
	dhcpv4.MessageTypeInform:   EventDHCPInform,
	dhcpv4.MessageTypeDecline:  EventDHCPDecline,
	dhcpv4.MessageTypeRelease:  EventDHCPRelease,
}

func requestedIP(req *dhcpv4.DHCPv4) netip.Addr {
	if ip, ok := netip.AddrFromSlice(req.RequestedIPAddress().To4()); ok && !ip.IsUnspecified() {
		return ip
	}
	if ip, ok := netip.AddrFromSlice(req.ClientIPAddr.To4()); ok && !ip.IsUnspecified() {
		return ip
	}
	return netip.Addr{}
}

func ipOf(b net.IP) netip.Addr {
	ip, _ := netip.AddrFromSlice(b.To4())
	return ip
}

// handleFull answers as the network's DHCP server.
func (s *Service) handleFull(ctx context.Context, req *dhcpv4.DHCPv4, mac string, client Client) (*dhcpv4.DHCPv4, *net.UDPAddr, uint64) {
	mt := req.MessageType()
	switch mt {
	case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform:
	case dhcpv4.MessageTypeDecline:
		if ip := ipOf(req.RequestedIPAddress()); ip.IsValid() {
			s.leases.Decline(mac, ip)
			s.log.Warn("dhcp: client declined its address (in use by someone else?)", "mac", mac, "ip", ip)
		}
		return nil, nil, 0
	case dhcpv4.MessageTypeRelease:
		if ip := ipOf(req.ClientIPAddr); ip.IsValid() {
			s.leases.Release(mac, ip)
		}
		return nil, nil, 0
	default:
		s.m.dhcpDropped.WithLabelValues("unexpected_type").Inc()
		return nil, nil, 0
	}
	sid := ipOf(req.ServerIdentifier())
	if mt == dhcpv4.MessageTypeRequest && sid.IsValid() && sid != s.cfg.ServerIP {
		s.leases.Forget(mac) // it chose another server's offer
		return nil, nil, 0
	}
	prof, known := s.lookup(ctx, mac)
	want := s.cfg.Reservations[mac]
	if !want.IsValid() && known && prof.IPv4.IsValid() {
		if s.cfg.Subnet.Contains(prof.IPv4) {
			want = prof.IPv4
		} else {
			s.warnOnce(mac+" "+prof.IPv4.String(), "dhcp: the host's provisioning address is outside this network; leasing from the pool",
				"mac", mac, "ipv4", prof.IPv4, "subnet", s.cfg.Subnet)
		}
	}
	resp, err := dhcpv4.NewReplyFromRequest(req)
	if err != nil {
		s.m.dhcpDropped.WithLabelValues("internal").Inc()
		return nil, nil, 0
	}
	var (
		yiaddr  netip.Addr
		durable uint64
	)
	switch mt {
	case dhcpv4.MessageTypeDiscover:
		ip, err := s.leases.Offer(mac, want, ipOf(req.RequestedIPAddress()))
		if err != nil {
			s.m.dhcpDropped.WithLabelValues("pool_exhausted").Inc()
			s.log.Error("dhcp: no address to offer", "mac", mac, "err", err)
			return nil, nil, 0
		}
		yiaddr = ip
		if want.IsValid() && ip != want {
			s.warnOnce(mac+" "+want.String(), "dhcp: the host's reserved address is not free (the network, broadcast or server address, or leased to another MAC); offering another",
				"mac", mac, "reserved", want, "offered", ip)
		}
		resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeOffer))
	case dhcpv4.MessageTypeRequest:
		ip := requestedIP(req)
		if !ip.IsValid() {
			s.m.dhcpDropped.WithLabelValues("request_without_address").Inc()
			return nil, nil, 0
		}
		lease, seq, err := s.leases.Bind(mac, ip, want, prof.Hostname, s.cfg.LeaseTime)
		if err != nil {
			s.log.Info("dhcp: NAK", "mac", mac, "ip", ip, "reason", err)
			nak, _ := dhcpv4.NewReplyFromRequest(req,
				dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP.AsSlice())),
				dhcpv4.WithOption(dhcpv4.OptMessage(err.Error())))
			if nak == nil {
				return nil, nil, 0
			}
			s.record(Event{MAC: mac, Kind: EventDHCPNak, Client: client.Kind, IP: ip.String(), Error: err.Error()})
			return nak, s.replyDest(req, nak), 0
		}
		yiaddr, durable = lease.IP, seq
		resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeAck))
	case dhcpv4.MessageTypeInform:
		resp.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeAck))
	}
	if yiaddr.IsValid() {
		resp.YourIPAddr = yiaddr.AsSlice()
		s.neigh.Store(yiaddr, mac)
		lt := s.cfg.LeaseTime
		resp.UpdateOption(dhcpv4.OptIPAddressLeaseTime(lt))
		resp.UpdateOption(dhcpv4.OptRenewTimeValue(lt / 2))
		resp.UpdateOption(dhcpv4.OptRebindingTimeValue(lt * 7 / 8))
	} else if ci := ipOf(req.ClientIPAddr); ci.IsValid() && !ci.IsUnspecified() {
		s.neigh.Store(ci, mac)
	}
	resp.UpdateOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP.AsSlice()))
	resp.UpdateOption(dhcpv4.OptSubnetMask(net.CIDRMask(s.cfg.Subnet.Bits(), 32)))
	if s.cfg.Router.IsValid() {
		resp.UpdateOption(dhcpv4.OptRouter(s.cfg.Router.AsSlice()))
	}
	if len(s.cfg.DNS) > 0 {
		dns := make([]net.IP, 0, len(s.cfg.DNS))
		for _, d := range s.cfg.DNS {
			dns = append(dns, d.AsSlice())
		}
		resp.UpdateOption(dhcpv4.OptDNS(dns...))
	}
	if known && prof.Hostname != "" {
		resp.UpdateOption(dhcpv4.OptHostName(prof.Hostname))
	}
	file := s.setBootInfo(resp, req, client, mac, false)
	kind := EventDHCPOffer
	if resp.MessageType() == dhcpv4.MessageTypeAck {
		kind = EventDHCPAck
	}
	e := Event{MAC: mac, Kind: kind, Client: client.Kind, File: file}
	if yiaddr.IsValid() {
		e.IP = yiaddr.String()
	}
	if known {
		e.State = prof.State
		e.Cached = prof.Cached
	}
	s.record(e)
	return resp, s.replyDest(req, resp), durable
}

// handleProxy answers only network-boot clients, with boot information and
// no address (PXE proxyDHCP): DHCPDISCOVER on port 67 gets an offer, a
// request to port 4011 (or to port 67 naming this server) an ACK.
func (s *Service) handleProxy(ctx context.Context, req *dhcpv4.DHCPv4, peer *net.UDPAddr, proxyPort bool, mac string, client Client) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	if ip := requestedIP(req); ip.IsValid() {
		s.neigh.Store(ip, mac)
	}
	if !client.NetBoot() {
		return nil, nil
	}
	mt := req.MessageType()
	var rt dhcpv4.MessageType
	switch {
	case mt == dhcpv4.MessageTypeDiscover && !proxyPort:
		rt = dhcpv4.MessageTypeOffer
	case mt == dhcpv4.MessageTypeRequest && proxyPort,
		mt == dhcpv4.MessageTypeInform && proxyPort,
		mt == dhcpv4.MessageTypeRequest && ipOf(req.ServerIdentifier()) == s.cfg.ServerIP:
		rt = dhcpv4.MessageTypeAck
	default:
		return nil, nil
	}
	prof, known := s.lookup(ctx, mac)
	resp, err := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(rt))
	if err != nil {
		return nil, nil
	}
	resp.YourIPAddr = net.IPv4zero
	resp.UpdateOption(dhcpv4.OptServerIdentifier(s.cfg.ServerIP.AsSlice()))
	file := s.setBootInfo(resp, req, client, mac, true)
	kind := EventDHCPOffer
	if rt == dhcpv4.MessageTypeAck {
		kind = EventDHCPAck
	}
	e := Event{MAC: mac, Kind: kind, Client: client.Kind, File: file, Detail: "proxyDHCP"}
	if known {
		e.State, e.Cached = prof.State, prof.Cached
	}
	s.record(e)
	if proxyPort {
		return resp, peer
	}
	return resp, s.replyDest(req, resp)
}

// setBootInfo puts the next boot stage into resp and returns it: the iPXE
// binary for PXE firmware (TFTP), its HTTP URL for UEFI HTTP boot, and the
// boot script URL for iPXE.
func (s *Service) setBootInfo(resp, req *dhcpv4.DHCPv4, c Client, mac string, proxy bool) string {
	if guid := req.Options.Get(optClientGUID); guid != nil {
		resp.UpdateOption(dhcpv4.OptGeneric(optClientGUID, guid))
	}
	var file string
	switch c.Kind {
	case ClientIPXE:
		file = s.scriptURL(mac)
		// no-pxedhcp: do not wait for ProxyDHCP offers (LAB.md: 3 s).
		resp.UpdateOption(dhcpv4.OptGeneric(optIPXE, Encapsulate(EncapsulatedOption{Code: ipxeOptNoPXEDHCP, Value: []byte{1}})))
		resp.ServerIPAddr = s.cfg.ServerIP.AsSlice()
		if proxy {
			resp.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
		}
	case ClientBIOS, ClientUEFI:
		file = s.cfg.BIOSBootFile
		if c.Kind == ClientUEFI {
			file = s.cfg.UEFIBootFile
		}
		resp.ServerIPAddr = s.cfg.TFTPAddr.Addr().AsSlice()
		// Option 60 marks a proxy's offers as PXE offers. A full server
		// sends neither it nor option 43: OVMF fails (PXE-E21) on a PXE
		// discovery-control option and boots plain DHCP+bootfile offers.
		if proxy {
			resp.UpdateOption(dhcpv4.OptClassIdentifier("PXEClient"))
		}
	case ClientUEFIHTTP:
		file = s.ipxeURL(s.cfg.UEFIBootFile)
		resp.ServerIPAddr = s.cfg.ServerIP.AsSlice()
		// UEFI HTTP boot ignores offers without HTTPClient.
		resp.UpdateOption(dhcpv4.OptClassIdentifier("HTTPClient"))
	default:
		return ""
	}
	resp.BootFileName = file
	return file
}

// replyDest is where a reply goes: to the relay (giaddr) on the server
// port, to the client's address when it has one, else broadcast.
func (s *Service) replyDest(req, resp *dhcpv4.DHCPv4) *net.UDPAddr {
	if gi := ipOf(req.GatewayIPAddr); gi.IsValid() && !gi.IsUnspecified() {
		return &net.UDPAddr{IP: gi.AsSlice(), Port: s.cfg.DHCPPort}
	}
	if ci := ipOf(req.ClientIPAddr); ci.IsValid() && !ci.IsUnspecified() && resp.MessageType() != dhcpv4.MessageTypeNak {
		return &net.UDPAddr{IP: ci.AsSlice(), Port: clientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: clientPort}
}

// macForIP returns the MAC last seen with ip in DHCP.
func (s *Service) macForIP(ip netip.Addr) string {
	if v, ok := s.neigh.Load(ip.Unmap()); ok {
		return v.(string)
	}
	if s.leases != nil {
		if mac, ok := s.leases.macOf(ip.Unmap()); ok {
			return mac
		}
	}
	return ""
}

// lookup asks the ProfileSource for mac's profile within LookupTimeout.
func (s *Service) lookup(ctx context.Context, mac string) (Profile, bool) {
	if s.profiles == nil {
		s.m.lookups.WithLabelValues("unknown").Inc()
		return Profile{}, false
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.LookupTimeout)
	defer cancel()
	start := time.Now()
	p, err := s.profiles.Profile(ctx, mac)
	switch {
	case err == nil && p.Cached:
		s.m.lookups.WithLabelValues("cached").Inc()
		return p, true
	case err == nil:
		s.m.lookups.WithLabelValues("known").Inc()
		return p, true
	case isNotFound(err):
		s.m.lookups.WithLabelValues("unknown").Inc()
	default:
		s.m.lookups.WithLabelValues("error").Inc()
		s.log.Warn("profile lookup failed: treating the host as unknown", "mac", mac, "err", err, "took", time.Since(start))
	}
	return Profile{}, false
}

// warnOnce logs msg at warning level the first time key comes up, so that a
// misconfigured host does not flood the log with every DHCP packet.
func (s *Service) warnOnce(key, msg string, args ...any) {
	if _, seen := s.warned.LoadOrStore(key, struct{}{}); !seen {
		s.log.Warn(msg, args...)
	}
}
