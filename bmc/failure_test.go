package bmc_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/lab/rack"
)

// udpSink is a BMC address where something reads every packet and never
// answers.
func udpSink(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			if _, _, err := c.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c.LocalAddr().String()
}

// tcpSink accepts connections and never answers (a hung Redfish BMC).
func tcpSink(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

// closedPort is an address where nothing listens.
func closedPort(t *testing.T, network string) string {
	t.Helper()
	var addr string
	if network == "udp" {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		require.NoError(t, err)
		addr = c.LocalAddr().String()
		c.Close()
	} else {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		require.NoError(t, err)
		addr = ln.Addr().String()
		ln.Close()
	}
	return addr
}

func requireKind(t *testing.T, err error, kind error, msgAndArgs ...any) {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	require.ErrorIs(t, err, kind, msgAndArgs...)
	var be *bmc.Error
	require.ErrorAs(t, err, &be, msgAndArgs...)
	require.NotEmpty(t, be.BMC)
	require.NotEmpty(t, be.Op)
}

// TestBadInput: wrong password, wrong cipher, a BMC that does not answer,
// one that answers slowly, one that lies, one that talks nonsense, an
// untrusted certificate. Each gives its typed error within the call's
// timeout (the test context is far longer), and no goroutine outlives the
// test (TestMain runs goleak).
func TestBadInput(t *testing.T) {
	r := startRack(t, rack.Config{Nodes: 3, Virtual: true, Redfish: true})
	const timeout = 3 * time.Second
	e := newManager(t, bmc.Config{Timeout: timeout, RootCAs: r.CertPool(), PowerPoll: 100 * time.Millisecond})
	ctx := ctxT(t, 5*time.Minute)
	n0, n1, n2 := r.Nodes[0], r.Nodes[1], r.Nodes[2]
	wrongPW := func(ep bmc.Endpoint) bmc.Endpoint { ep.Password = bmc.NewSecret("wrong-password"); return ep }
	ipmiAt := func(addr string) bmc.Endpoint {
		return bmc.Endpoint{Protocol: rackcloud.BMCIPMI, Address: addr, Username: "admin", Password: bmc.NewSecret("sink-password")}
	}
	redfishAt := func(addr string) bmc.Endpoint {
		return bmc.Endpoint{Protocol: rackcloud.BMCRedfish, Address: addr, Username: "admin", Password: bmc.NewSecret("sink-password")}
	}

	for _, tc := range []struct {
		name string
		ep   bmc.Endpoint
		mgr  *bmc.Manager
		want error
	}{
		{"ipmi wrong password", wrongPW(ipmiEndpoint(n0)), e.m, bmc.ErrAuth},
		{"redfish wrong password", wrongPW(redfishEndpoint(n0)), e.m, bmc.ErrAuth},
		{"ipmi silent", ipmiAt(udpSink(t)), e.m, bmc.ErrTimeout},
		{"redfish silent", redfishAt(tcpSink(t)), e.m, bmc.ErrTimeout},
		{"ipmi nothing listening", ipmiAt(closedPort(t, "udp")), e.m, bmc.ErrTimeout},
		{"redfish nothing listening", redfishAt(closedPort(t, "tcp")), e.m, bmc.ErrUnreachable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.mgr.Open(ctx, tc.ep)
			requireKind(t, err, tc.want)
			require.NoError(t, ctx.Err(), "bounded by the call's timeout")
			require.NotContains(t, err.Error(), tc.ep.Password.Reveal())
			h := e.m.Health()[tc.ep.String()]
			require.False(t, h.Healthy)
			require.Equal(t, 1, h.ConsecutiveFailures)
			require.Equal(t, 0.0, metric(t, e.reg, "rackcloud_bmc_up", map[string]string{"bmc": tc.ep.String()}))
		})
	}
	require.GreaterOrEqual(t, metric(t, e.reg, "rackcloud_bmc_unhealthy", nil), 6.0)

	t.Run("ipmi wrong cipher", func(t *testing.T) {
		other := newManager(t, bmc.Config{Timeout: timeout, CipherSuite: "17"})
		_, err := other.m.Open(ctx, ipmiEndpoint(n0))
		requireKind(t, err, bmc.ErrCipher)
	})

	t.Run("redfish untrusted certificate", func(t *testing.T) {
		other := newManager(t, bmc.Config{Timeout: timeout}) // system roots only
		_, err := other.m.Open(ctx, redfishEndpoint(n0))
		requireKind(t, err, bmc.ErrTLS)
	})

	t.Run("slow", func(t *testing.T) {
		for _, ep := range []bmc.Endpoint{ipmiEndpoint(n1), redfishEndpoint(n1)} {
			c, err := e.m.Open(ctx, ep)
			require.NoError(t, err, ep.String())
			n1.SetFault(rack.Fault{Delay: 3 * timeout})
			_, err = c.PowerState(ctx)
			n1.SetFault(rack.Fault{})
			requireKind(t, err, bmc.ErrTimeout, ep.String())
			require.NoError(t, ctx.Err())
		}
	})

	t.Run("lies about power", func(t *testing.T) {
		for _, ep := range []bmc.Endpoint{ipmiEndpoint(n2), redfishEndpoint(n2)} {
			c, err := e.m.Open(ctx, ep)
			require.NoError(t, err)
			require.NoError(t, c.EnsurePower(ctx, rackcloud.PowerOn), ep.String())
			require.Equal(t, rackcloud.PowerOn, n2.Power())
			n2.SetFault(rack.Fault{ReportPower: rackcloud.PowerOn})
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err = c.EnsurePower(wctx, rackcloud.PowerOff)
			cancel()
			n2.SetFault(rack.Fault{})
			requireKind(t, err, bmc.ErrPowerMismatch, ep.String())
			require.Contains(t, err.Error(), "reports on, want off")
			require.Equal(t, rackcloud.PowerOff, n2.Power(), "the machine did obey")
		}
	})

	t.Run("redfish talks nonsense", func(t *testing.T) {
		c, err := e.m.Open(ctx, redfishEndpoint(n2))
		require.NoError(t, err)
		n2.SetFault(rack.Fault{RedfishPowerState: "Banana"})
		_, err = c.PowerState(ctx)
		n2.SetFault(rack.Fault{})
		requireKind(t, err, bmc.ErrBadResponse)
		require.Contains(t, err.Error(), "Banana")
	})

	t.Run("invalid requests", func(t *testing.T) {
		_, err := e.m.Client(bmc.Endpoint{Protocol: "snmp", Address: "127.0.0.1", Username: "u"})
		require.ErrorIs(t, err, rackcloud.ErrInvalid)
		_, err = e.m.Client(bmc.Endpoint{Protocol: rackcloud.BMCIPMI, Address: "127.0.0.1:0x", Username: "u"})
		require.ErrorIs(t, err, rackcloud.ErrInvalid)
		c, err := e.m.Client(ipmiEndpoint(n0))
		require.NoError(t, err)
		require.ErrorIs(t, c.SetBootDevice(ctx, "floppy", bmc.BootOptions{}), rackcloud.ErrInvalid)
		require.ErrorIs(t, c.SetPower(ctx, "explode"), rackcloud.ErrInvalid)
		require.ErrorIs(t, c.EnsurePower(ctx, rackcloud.PowerUnknown), rackcloud.ErrInvalid)
		_, err = bmc.New(bmc.Config{CipherSuite: "three"})
		require.ErrorIs(t, err, rackcloud.ErrInvalid)
		_, err = bmc.New(bmc.Config{IpmitoolPath: "/nonexistent/ipmitool"})
		require.Error(t, err)
	})

	t.Run("recovers", func(t *testing.T) {
		// Right credentials for a BMC that failed with wrong ones: the
		// back-off is reset and the BMC is healthy again.
		c, err := e.m.Open(ctx, ipmiEndpoint(n0))
		require.NoError(t, err)
		require.True(t, c.Health().Healthy)
	})
}

// TestBackoffLeavesBMCAlone: after a failure the BMC is left alone; a call whose
// deadline ends before the back-off fails at once without touching the
// BMC; a BMC that fails is retried later.
func TestBackoffLeavesBMCAlone(t *testing.T) {
	r := startRack(t, rack.Config{Nodes: 1, Virtual: true, Redfish: true, NoIPMI: true})
	n := r.Nodes[0]
	proxy, seen := countingProxy(t, r, n)
	e := newManager(t, bmc.Config{Timeout: 2 * time.Second, InsecureTLS: true, BackoffMin: time.Hour, RedfishBasicAuth: true})
	ctx := ctxT(t, time.Minute)
	ep := redfishEndpoint(n)
	ep.Address = proxy

	c, err := e.m.Open(ctx, ep)
	require.NoError(t, err)
	n.SetFault(rack.Fault{RedfishPowerState: "Banana"})
	_, err = c.PowerState(ctx)
	requireKind(t, err, bmc.ErrBadResponse)
	before := seen.Load()
	_, err = c.PowerState(ctx) // ctx ends long before an hour
	requireKind(t, err, bmc.ErrBackoff)
	require.Contains(t, err.Error(), "Banana", "says why")
	require.Equal(t, before, seen.Load(), "the BMC was not asked")
	require.Equal(t, 1.0, metric(t, e.reg, "rackcloud_bmc_requests_total", map[string]string{"op": "power-status", "result": "backoff"}))
	require.False(t, c.Health().BackoffUntil.IsZero())
}

// countingProxy puts a reverse proxy in front of a node's Redfish BMC and
// counts the requests and the most in flight at once.
func countingProxy(t *testing.T, r *rack.Rack, n *rack.Node) (string, *atomic.Int64) {
	p, seen, _ := countingProxyMax(t, r, n)
	return p, seen
}

func countingProxyMax(t *testing.T, r *rack.Rack, n *rack.Node) (string, *atomic.Int64, *atomic.Int64) {
	t.Helper()
	u, err := url.Parse(n.RedfishURL)
	require.NoError(t, err)
	rp := httputil.NewSingleHostReverseProxy(u)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: r.CertPool()}}
	rp.Transport = tr
	var seen, inflight, maxIn atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		seen.Add(1)
		cur := inflight.Add(1)
		for {
			m := maxIn.Load()
			if cur <= m || maxIn.CompareAndSwap(m, cur) {
				break
			}
		}
		defer inflight.Add(-1)
		rp.ServeHTTP(w, req)
	}))
	srv.StartTLS()
	t.Cleanup(func() { srv.Close(); tr.CloseIdleConnections() })
	return strings.TrimPrefix(srv.URL, "https://"), &seen, &maxIn
}

// TestOneRequestAtATime: many goroutines calling one BMC never have more
// than one request in flight there, and each gets the right answer.
func TestOneRequestAtATime(t *testing.T) {
	r := startRack(t, rack.Config{Nodes: 1, Virtual: true, Redfish: true, NoIPMI: true})
	n := r.Nodes[0]
	proxy, seen, maxIn := countingProxyMax(t, r, n)
	e := newManager(t, bmc.Config{Timeout: 20 * time.Second, InsecureTLS: true, Rate: 1000, Burst: 1000})
	ctx := ctxT(t, 2*time.Minute)
	ep := redfishEndpoint(n)
	ep.Address = proxy
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := e.m.Client(ep)
			if err != nil {
				errs <- err
				return
			}
			st, err := c.PowerState(ctx)
			if err == nil && st != rackcloud.PowerOff {
				err = errors.New("wrong state " + string(st))
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Greater(t, seen.Load(), int64(16))
	require.Equal(t, int64(1), maxIn.Load(), "one request at a time per BMC")
}

// TestBusy: a call whose deadline passes while another call holds the
// BMC's turn fails with ErrBusy, which says nothing about the BMC's health.
func TestBusy(t *testing.T) {
	r := startRack(t, rack.Config{Nodes: 1, Virtual: true, Redfish: true, NoIPMI: true})
	n := r.Nodes[0]
	proxy, seen := countingProxy(t, r, n)
	e := newManager(t, bmc.Config{Timeout: 30 * time.Second, InsecureTLS: true, RedfishBasicAuth: true})
	ctx := ctxT(t, time.Minute)
	ep := redfishEndpoint(n)
	ep.Address = proxy
	c, err := e.m.Open(ctx, ep)
	require.NoError(t, err)

	n.SetFault(rack.Fault{Delay: 3 * time.Second})
	before := seen.Load()
	slow := make(chan error, 1)
	go func() {
		_, err := c.PowerState(ctx)
		slow <- err
	}()
	require.Eventually(t, func() bool { return seen.Load() > before }, 20*time.Second, 10*time.Millisecond, "the slow call reached the BMC")
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = c.PowerState(short)
	cancel()
	requireKind(t, err, bmc.ErrBusy)
	require.NoError(t, <-slow, "the slow call itself succeeds")
	require.True(t, c.Health().Healthy)
	require.Equal(t, 1.0, metric(t, e.reg, "rackcloud_bmc_requests_total", map[string]string{"op": "power-status", "result": "busy"}))

	// The caller's own short deadline is a timeout for the caller, not a
	// sick BMC.
	short, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = c.PowerState(short)
	cancel()
	requireKind(t, err, bmc.ErrTimeout)
	n.SetFault(rack.Fault{})
	require.True(t, c.Health().Healthy)
	require.True(t, c.Health().BackoffUntil.IsZero())
}
