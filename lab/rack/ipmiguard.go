package rack

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"time"
)

// ipmiGuard stands on a node's IPMI port in front of its ipmi_sim and
// refuses what a hardened BMC refuses but ipmi_sim cannot be configured to
// refuse: RMCP+ sessions whose authentication algorithm is RAKP-none
// (cipher suite 0), which OpenIPMI's lanserv accepts for any known user
// name without checking the password (its per-cipher-suite privilege
// table is indexed by privilege, not by suite, so it cannot turn suite 0
// off). The guard answers such an Open Session Request as a BMC with
// suite 0 disabled does, "no matching cipher suite", and relays every
// other datagram unchanged, in both directions, one upstream socket per
// client.
type ipmiGuard struct {
	conn     *net.UDPConn
	upstream *net.UDPAddr

	mu     sync.Mutex
	peers  map[string]*net.UDPConn
	closed bool
	wg     sync.WaitGroup
}

// guardIdle is how long a client's upstream socket lives without traffic.
const guardIdle = 30 * time.Second

// startIPMIGuard listens on addr ("127.0.0.1:0" for a free port) and
// relays to upstream.
func startIPMIGuard(addr string, upstream *net.UDPAddr) (*ipmiGuard, error) {
	la, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, err
	}
	c, err := net.ListenUDP("udp4", la)
	if err != nil {
		return nil, err
	}
	g := &ipmiGuard{conn: c, upstream: upstream, peers: map[string]*net.UDPConn{}}
	g.wg.Add(1)
	go g.serve()
	return g, nil
}

// port is the guard's (the node's IPMI) port.
func (g *ipmiGuard) port() int { return g.conn.LocalAddr().(*net.UDPAddr).Port }

func (g *ipmiGuard) serve() {
	defer g.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := g.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		pkt := buf[:n]
		if resp := refuseSuiteZero(pkt); resp != nil {
			_, _ = g.conn.WriteToUDP(resp, from)
			continue
		}
		up, err := g.peer(from)
		if err != nil {
			continue
		}
		_, _ = up.Write(pkt)
	}
}

// peer returns the upstream socket of client from, starting its relay of
// answers.
func (g *ipmiGuard) peer(from *net.UDPAddr) (*net.UDPConn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil, net.ErrClosed
	}
	key := from.String()
	if up, ok := g.peers[key]; ok {
		return up, nil
	}
	up, err := net.DialUDP("udp4", nil, g.upstream)
	if err != nil {
		return nil, err
	}
	g.peers[key] = up
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		buf := make([]byte, 2048)
		for {
			_ = up.SetReadDeadline(time.Now().Add(guardIdle))
			n, err := up.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					g.mu.Lock()
					if g.peers[key] == up {
						delete(g.peers, key)
					}
					g.mu.Unlock()
				}
				up.Close()
				return
			}
			_, _ = g.conn.WriteToUDP(buf[:n], from)
		}
	}()
	return up, nil
}

// close stops the guard and its relays. Safe to call twice.
func (g *ipmiGuard) close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	g.conn.Close()
	for _, up := range g.peers {
		up.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
}

// RMCP+ constants (IPMI 2.0 sections 13.1-13.2, 13.17-13.18).
const (
	rmcpVersion          = 0x06
	rmcpClassIPMI        = 0x07
	authTypeRMCPPlus     = 0x06
	payloadOpenSession   = 0x10
	payloadOpenSessionOK = 0x11
	statusNoCipherSuite  = 0x11
)

// refuseSuiteZero returns the Open Session Response refusing pkt when pkt
// is an RMCP+ Open Session Request that proposes RAKP-none, and nil for
// every other datagram. It is pure.
func refuseSuiteZero(pkt []byte) []byte {
	// RMCP header (4) + session header: auth type, payload type, session
	// ID (4), sequence (4), payload length (2); then the payload.
	if len(pkt) < 16 || pkt[0] != rmcpVersion || pkt[3]&0x1f != rmcpClassIPMI || pkt[4] != authTypeRMCPPlus ||
		pkt[5]&0x3f != payloadOpenSession {
		return nil
	}
	n := int(binary.LittleEndian.Uint16(pkt[14:16]))
	p := pkt[16:]
	if n < 32 || len(p) < n {
		return nil // malformed: let the BMC refuse it
	}
	// Authentication payload: type (0), reserved (2), length, algorithm.
	// A length of 0 lets the BMC pick (RAKP-HMAC-SHA1 for ipmi_sim).
	if p[8] != 0 || p[11] == 0 || p[12]&0x3f != 0 {
		return nil
	}
	resp := []byte{rmcpVersion, 0x00, 0xff, rmcpClassIPMI,
		authTypeRMCPPlus, payloadOpenSessionOK, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0,
		p[0], statusNoCipherSuite, 0, 0, p[4], p[5], p[6], p[7]}
	return resp
}
