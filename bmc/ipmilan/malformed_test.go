package ipmilan_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/bmc/ipmilan"
	"github.com/rackcloud/rackcloud/lab/rack"
)

// mangler relays one client's datagrams to a real BMC and spoils the
// BMC's reply number spoil (counting from 0) with fn, once.
type mangler struct {
	conn  *net.UDPConn
	up    *net.UDPConn
	spoil atomic.Int64
	fn    atomic.Value // func([]byte) []byte
	n     atomic.Int64
	quiet atomic.Bool // drop every reply
	wg    sync.WaitGroup
}

func startMangler(t *testing.T, bmc *net.UDPAddr) *mangler {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	up, err := net.DialUDP("udp4", nil, bmc)
	require.NoError(t, err)
	m := &mangler{conn: c, up: up}
	m.spoil.Store(-1)
	var client atomic.Pointer[net.UDPAddr]
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			client.Store(from)
			_, _ = up.Write(buf[:n])
		}
	}()
	go func() {
		defer m.wg.Done()
		buf := make([]byte, 2048)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return
			}
			if m.quiet.Load() {
				continue
			}
			pkt := append([]byte(nil), buf[:n]...)
			if i := m.n.Add(1) - 1; i == m.spoil.Load() {
				pkt = m.fn.Load().(func([]byte) []byte)(pkt)
			}
			if to := client.Load(); to != nil {
				_, _ = c.WriteToUDP(pkt, to)
			}
		}
	}()
	t.Cleanup(func() { c.Close(); up.Close(); m.wg.Wait() })
	return m
}

// TestMalformedReplies spoils each of the first replies of a real BMC in
// turn (the handshake: channel authentication capabilities, Open Session,
// RAKP 2 and 4, the session privilege, then the chassis status): cut
// short, emptied, or with a byte flipped. Each call ends with an answer or
// an error within its deadline, never a panic, and the next call, on clean
// replies, reads the power.
func TestMalformedReplies(t *testing.T) {
	r, ctx := startRack(t, rack.Config{Nodes: 1, Virtual: true})
	n := r.Nodes[0]
	m := startMangler(t, net.UDPAddrFromAddrPort(n.IPMI))
	addr := m.conn.LocalAddr().(*net.UDPAddr)
	spoilers := map[string]func([]byte) []byte{
		"empty":   func([]byte) []byte { return nil },
		"1 byte":  func(p []byte) []byte { return p[:1] },
		"header":  func(p []byte) []byte { return p[:min(len(p), 4)] },
		"16":      func(p []byte) []byte { return p[:min(len(p), 16)] },
		"cut one": func(p []byte) []byte { return p[:len(p)-1] },
		"flip":    func(p []byte) []byte { p[len(p)/2] ^= 0x5a; return p },
		"flip last": func(p []byte) []byte {
			p[len(p)-1] ^= 0xff
			return p
		},
	}
	for stage := 0; stage < 6; stage++ {
		for name, fn := range spoilers {
			t.Run(fmt.Sprintf("reply %d %s", stage, name), func(t *testing.T) {
				c, err := ipmilan.New(ipmilan.Config{Host: addr.IP.String(), Port: addr.Port, Username: n.User, Password: n.Password,
					AttemptTimeout: 100 * time.Millisecond, Retries: 1})
				require.NoError(t, err)
				defer c.Close(context.Background())
				m.fn.Store(fn)
				m.n.Store(0)
				m.spoil.Store(int64(stage))
				cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				st, err := c.PowerStateGet(cctx)
				cancel()
				if err == nil {
					require.Equal(t, "off", st)
				}
				m.spoil.Store(-1)
				st, err = c.PowerStateGet(ctx)
				require.NoError(t, err, "clean replies again")
				require.Equal(t, "off", st)
			})
		}
	}
}

// TestSessionReused: after the handshake, each call is one request and
// one reply on the same session, also with many callers at once; a
// session the BMC stops answering on is dropped and a new one opened.
func TestSessionReused(t *testing.T) {
	r, ctx := startRack(t, rack.Config{Nodes: 1, Virtual: true})
	n := r.Nodes[0]
	m := startMangler(t, net.UDPAddrFromAddrPort(n.IPMI))
	addr := m.conn.LocalAddr().(*net.UDPAddr)
	c, err := ipmilan.New(ipmilan.Config{Host: addr.IP.String(), Port: addr.Port, Username: n.User, Password: n.Password,
		AttemptTimeout: 200 * time.Millisecond, Retries: 1})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close(context.Background())) })
	require.NoError(t, c.Open(ctx))

	before := m.n.Load()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := c.PowerStateGet(ctx)
			if err == nil && st != "off" {
				err = fmt.Errorf("power %q", st)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, int64(20), m.n.Load()-before, "one reply per call: no new handshake")

	// The BMC goes quiet: every reply is lost until it comes back.
	m.quiet.Store(true)
	short, cancel := context.WithTimeout(ctx, time.Second)
	_, err = c.PowerStateGet(short)
	cancel()
	require.Error(t, err)
	m.quiet.Store(false)
	st, err := c.PowerStateGet(ctx)
	require.NoError(t, err, "a new session after the lost one")
	require.Equal(t, "off", st)
}
