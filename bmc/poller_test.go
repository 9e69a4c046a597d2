package bmc_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/lab/rack"
)

type pollLog struct {
	mu  sync.Mutex
	ok  map[string]int
	bad map[string][]error
}

func (l *pollLog) on(r bmc.PollResult) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.Err == nil {
		l.ok[r.ID]++
	} else {
		l.bad[r.ID] = append(l.bad[r.ID], r.Err)
	}
}

func (l *pollLog) counts() (map[string]int, map[string][]error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ok := map[string]int{}
	for k, v := range l.ok {
		ok[k] = v
	}
	bad := map[string][]error{}
	for k, v := range l.bad {
		bad[k] = append([]error(nil), v...)
	}
	return ok, bad
}

func runPoller(t *testing.T, p *bmc.Poller) context.CancelFunc {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return cancel
}

// TestPollerUnreachableDoesNotBlock polls four simulated BMCs and one that
// never answers, with two slots: the silent BMC holds one slot for its
// whole (long) timeout while the others keep being polled.
func TestPollerUnreachableDoesNotBlock(t *testing.T) {
	r := startRack(t, rack.Config{Nodes: 4, Virtual: true})
	e := newManager(t, bmc.Config{Timeout: time.Minute})
	log := &pollLog{ok: map[string]int{}, bad: map[string][]error{}}
	p := e.m.NewPoller(bmc.PollerConfig{Interval: 100 * time.Millisecond, Concurrency: 2, OnResult: log.on})
	sink := bmc.Endpoint{Protocol: rackcloud.BMCIPMI, Address: udpSink(t), Username: "admin", Password: bmc.NewSecret("sink-password")}
	require.NoError(t, p.Set("silent", sink))
	for _, n := range r.Nodes {
		require.NoError(t, p.Set(n.Name, ipmiEndpoint(n)))
	}
	runPoller(t, p)
	require.Eventually(t, func() bool {
		ok, _ := log.counts()
		for _, n := range r.Nodes {
			if ok[n.Name] < 3 {
				return false
			}
		}
		return true
	}, 50*time.Second, 100*time.Millisecond, "every answering BMC polled 3 times")
	ok, bad := log.counts()
	require.Zero(t, ok["silent"])
	require.Empty(t, bad["silent"], "the silent BMC's first poll is still waiting for its timeout")
	for _, n := range r.Nodes {
		require.Empty(t, bad[n.Name])
		res := p.Results()[n.Name]
		require.Equal(t, rackcloud.PowerOff, res.Power)
		require.True(t, res.Health.Healthy)
	}
}

// TestPollerHealth: a BMC that stops answering is marked unhealthy, raises
// the metrics, is backed off, and recovers when it answers again; the
// poller follows power changes.
func TestPollerHealth(t *testing.T) {
	r := startRack(t, rack.Config{Nodes: 2, Virtual: true, Redfish: true})
	e := newManager(t, bmc.Config{Timeout: time.Second, RootCAs: r.CertPool(), BackoffMin: 200 * time.Millisecond, BackoffMax: time.Second})
	log := &pollLog{ok: map[string]int{}, bad: map[string][]error{}}
	p := e.m.NewPoller(bmc.PollerConfig{Interval: 100 * time.Millisecond, Concurrency: 4, OnResult: log.on})
	a, b := r.Nodes[0], r.Nodes[1]
	require.NoError(t, p.Set("a", ipmiEndpoint(a)))
	require.NoError(t, p.Set("b", redfishEndpoint(b)))
	runPoller(t, p)

	require.NoError(t, b.PowerOn())
	require.Eventually(t, func() bool {
		res := p.Results()
		return res["a"].Power == rackcloud.PowerOff && res["b"].Power == rackcloud.PowerOn
	}, 20*time.Second, 50*time.Millisecond, "poller sees b powered on")

	b.SetFault(rack.Fault{Delay: 5 * time.Second})
	require.Eventually(t, func() bool {
		res := p.Results()["b"]
		return res.Err != nil && !res.Health.Healthy
	}, 30*time.Second, 50*time.Millisecond, "b marked unhealthy")
	require.ErrorIs(t, p.Results()["b"].Err, bmc.ErrTimeout)
	require.Equal(t, 0.0, metric(t, e.reg, "rackcloud_bmc_up", map[string]string{"bmc": redfishEndpoint(b).String()}))
	require.Equal(t, 1.0, metric(t, e.reg, "rackcloud_bmc_unhealthy", nil))
	require.GreaterOrEqual(t, metric(t, e.reg, "rackcloud_bmc_polls_total", map[string]string{"result": "timeout"}), 1.0)
	require.True(t, p.Results()["a"].Health.Healthy, "a is not affected")

	b.SetFault(rack.Fault{})
	require.Eventually(t, func() bool {
		res := p.Results()["b"]
		return res.Err == nil && res.Health.Healthy
	}, 30*time.Second, 50*time.Millisecond, "b recovers")
	require.Equal(t, 1.0, metric(t, e.reg, "rackcloud_bmc_up", map[string]string{"bmc": redfishEndpoint(b).String()}))
	require.Equal(t, 0.0, metric(t, e.reg, "rackcloud_bmc_unhealthy", nil))

	p.Remove("b")
	_, has := p.Results()["b"]
	require.False(t, has)
}
