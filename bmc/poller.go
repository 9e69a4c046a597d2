package bmc

import (
	"container/heap"
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rackcloud/rackcloud"
)

// Defaults for PollerConfig.
const (
	DefaultPollInterval    = 30 * time.Second
	DefaultPollJitter      = 0.2
	DefaultPollConcurrency = 8
	// DefaultSensorEvery: the sensors are read on the first poll of a BMC
	// and then on every DefaultSensorEvery-th (every 2 minutes at the
	// default interval).
	DefaultSensorEvery = 4
)

// PollerConfig configures a Poller.
type PollerConfig struct {
	// Interval between two polls of one BMC (DefaultPollInterval when
	// zero). A failing BMC is polled again only after its back-off.
	Interval time.Duration
	// Jitter spreads polls by +-Jitter*Interval (DefaultPollJitter when
	// zero, none when negative), and the first polls over
	// [0, Jitter*Interval), so that BMCs are not all asked at once.
	Jitter float64
	// Concurrency is the most polls in flight at once
	// (DefaultPollConcurrency when zero). A BMC that does not answer holds
	// one slot for at most Config.Timeout.
	Concurrency int
	// SensorEvery: after a good power poll, the BMC's temperature, fan
	// and power sensors are read too on the first poll and then on every
	// SensorEvery-th (DefaultSensorEvery when zero, never when negative),
	// and exported as ipmi_temperature_celsius, ipmi_fan_speed_rpm and
	// ipmi_power_watts{host,name}, host being the poll's ID. A BMC whose
	// poll or sensor read fails, or that is removed, has its series
	// deleted: no stale readings.
	SensorEvery int
	// OnResult, when set, is called after every poll, from the polling
	// goroutine: it must not block for long.
	OnResult func(PollResult)
}

// PollResult is the outcome of one power-state poll.
type PollResult struct {
	// ID is the caller's name for the BMC (e.g. the host ID).
	ID    string
	BMC   string
	Power rackcloud.PowerState
	Err   error
	// Generation is the caller's number for the endpoint the poll began
	// with (SetGeneration): a result whose generation is not the
	// caller's latest was made with older credentials or address.
	Generation int64
	// Health is the BMC's health after the poll.
	Health Health
	At     time.Time
	// Sensors are the readings when this poll read them (see
	// PollerConfig.SensorEvery), SensorsErr why they could not be read.
	Sensors    []Sensor
	SensorsErr error
}

// Poller polls the power state of many BMCs concurrently, each at its own
// jittered interval, backing off from BMCs that fail. A BMC that does not
// answer never delays the others beyond taking one of the Concurrency
// slots for at most Config.Timeout.
type Poller struct {
	m   *Manager
	cfg PollerConfig

	mu      sync.Mutex
	targets map[string]*target
	queue   pollQueue
	results map[string]PollResult
	wake    chan struct{}
}

type target struct {
	id     string
	client *Client
	gen    int64
	next   time.Time
	index  int  // in queue; -1 while polled or removed
	again  bool // changed while polled: poll again at once
	gone   bool
	polls  int                // polls done, for SensorEvery
	series map[sensorKey]bool // exported sensor series; guarded by Poller.mu
}

// sensorKey names one exported sensor series of a target.
type sensorKey struct {
	kind SensorKind
	name string
}

// NewPoller returns a Poller of m's BMCs; add BMCs with Set and start it
// with Run.
func (m *Manager) NewPoller(cfg PollerConfig) *Poller {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultPollInterval
	}
	if cfg.Jitter == 0 {
		cfg.Jitter = DefaultPollJitter
	}
	if cfg.Jitter < 0 {
		cfg.Jitter = 0
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultPollConcurrency
	}
	if cfg.SensorEvery == 0 {
		cfg.SensorEvery = DefaultSensorEvery
	}
	return &Poller{
		m:       m,
		cfg:     cfg,
		targets: map[string]*target{},
		results: map[string]PollResult{},
		wake:    make(chan struct{}, 1),
	}
}

// Set adds or updates the BMC polled under id, with generation 0.
func (p *Poller) Set(id string, ep Endpoint) error { return p.SetGeneration(id, ep, 0) }

// SetGeneration adds or updates the BMC polled under id; gen is the
// caller's number for this endpoint (e.g. a credentials generation) and is
// copied into every result of a poll that begins after the change. A
// target whose generation changes is polled again at once (after the poll
// in flight, if any), not at its next interval.
func (p *Poller) SetGeneration(id string, ep Endpoint, gen int64) error {
	// The client's credentials change before the generation does, so a
	// poll that reads the new generation uses the new credentials; one
	// that read the old generation is reported with it, even if it ran
	// with the new credentials.
	c, err := p.m.Client(ep)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.targets[id]; ok {
		changed := t.gen != gen || t.client != c
		t.client, t.gen = c, gen
		if changed {
			if t.index >= 0 {
				t.next = time.Now()
				heap.Fix(&p.queue, t.index)
				p.signal()
			} else {
				t.again = true
			}
		}
		return nil
	}
	first := time.Duration(rand.Float64() * p.cfg.Jitter * float64(p.cfg.Interval))
	t := &target{id: id, client: c, gen: gen, next: time.Now().Add(first), index: -1}
	p.targets[id] = t
	heap.Push(&p.queue, t)
	p.signal()
	return nil
}

// Remove stops polling id.
func (p *Poller) Remove(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.targets[id]
	if !ok {
		return
	}
	t.gone = true
	delete(p.targets, id)
	delete(p.results, id)
	p.exportLocked(t, nil)
	if t.index >= 0 {
		heap.Remove(&p.queue, t.index)
	}
	p.signal()
}

// Results returns the last result of every polled BMC, by ID.
func (p *Poller) Results() map[string]PollResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]PollResult, len(p.results))
	for k, v := range p.results {
		out[k] = v
	}
	return out
}

func (p *Poller) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// due pops the first target if it is due, or says how long to wait.
func (p *Poller) due(now time.Time) (*target, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		return nil, time.Hour
	}
	t := p.queue[0]
	if wait := t.next.Sub(now); wait > 0 {
		return nil, wait
	}
	heap.Pop(&p.queue)
	return t, 0
}

// Run polls until ctx ends, then waits for the polls in flight (which end
// with ctx) and returns nil.
func (p *Poller) Run(ctx context.Context) error {
	slots := make(chan struct{}, p.cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		var t *target
		for t == nil {
			var wait time.Duration
			t, wait = p.due(time.Now())
			if t != nil {
				break
			}
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				<-slots
				return nil
			case <-p.wake:
			case <-timer.C:
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			p.poll(ctx, t)
		}()
	}
}

func (p *Poller) poll(ctx context.Context, t *target) {
	p.mu.Lock()
	client, gen := t.client, t.gen
	p.mu.Unlock()
	st, err := client.PowerState(ctx)
	res := PollResult{ID: t.id, BMC: client.key, Power: st, Err: err, Generation: gen}
	readSensors := err == nil && p.cfg.SensorEvery > 0 && t.polls%p.cfg.SensorEvery == 0
	t.polls++
	if readSensors {
		res.Sensors, res.SensorsErr = client.Sensors(ctx)
	}
	now := time.Now()
	h := client.Health()
	res.Health, res.At = h, now
	if ctx.Err() != nil && (err != nil || res.SensorsErr != nil) {
		return // shutting down: not a result
	}
	p.m.met.polls.WithLabelValues(result(err)).Inc()
	next := now.Add(jitter(p.cfg.Interval, p.cfg.Jitter))
	if err != nil && h.BackoffUntil.After(next) {
		next = h.BackoffUntil
	}
	p.mu.Lock()
	if t.again {
		next, t.again = now, false
	}
	if !t.gone {
		t.next = next
		heap.Push(&p.queue, t)
		p.results[t.id] = res
		switch {
		case err != nil || res.SensorsErr != nil:
			p.exportLocked(t, nil)
		case readSensors:
			p.exportLocked(t, res.Sensors)
		}
	}
	p.mu.Unlock()
	p.signal()
	if p.cfg.OnResult != nil {
		p.cfg.OnResult(res)
	}
}

// exportLocked sets t's sensor series to ss, deleting those no longer
// there (all of them when ss is empty). The caller holds p.mu, so that a
// removed target's series are not set again by its last poll.
func (p *Poller) exportLocked(t *target, ss []Sensor) {
	met := p.m.met
	keep := make(map[sensorKey]bool, len(ss))
	for _, s := range ss {
		g := met.sensorGauge(s.Kind)
		if g == nil {
			continue
		}
		k := sensorKey{s.Kind, s.Name}
		keep[k] = true
		g.WithLabelValues(t.id, s.Name).Set(s.Value)
	}
	for k := range t.series {
		if !keep[k] {
			met.sensorGauge(k.kind).DeleteLabelValues(t.id, k.name)
		}
	}
	t.series = keep
}

// pollQueue is a min-heap of targets by next poll time.
type pollQueue []*target

func (q pollQueue) Len() int           { return len(q) }
func (q pollQueue) Less(i, j int) bool { return q[i].next.Before(q[j].next) }
func (q pollQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *pollQueue) Push(x any) {
	t := x.(*target)
	t.index = len(*q)
	*q = append(*q, t)
}
func (q *pollQueue) Pop() any {
	old := *q
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.index = -1
	*q = old[:len(old)-1]
	return t
}
