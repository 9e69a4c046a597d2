package bmc

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Manager holds one Client per BMC, so that every caller of a BMC shares
// its turn-taking, rate limit, back-off and health.
type Manager struct {
	cfg Config
	log *slog.Logger
	met *metrics

	mu        sync.Mutex
	clients   map[string]*Client
	unhealthy int
	closed    bool
}

// New returns a Manager. It fails if ipmitool cannot be found or the
// configuration is invalid.
func New(cfg Config) (*Manager, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Manager{
		cfg:     cfg,
		log:     cfg.Logger,
		met:     newMetrics(cfg.Registerer),
		clients: map[string]*Client{},
	}, nil
}

// Client returns the Client of ep's BMC, creating it without talking to
// the BMC. Endpoints with the same protocol and address share a Client;
// new credentials replace the old ones (and reset the BMC's back-off).
func (m *Manager) Client(ep Endpoint) (*Client, error) {
	if err := ep.validate(); err != nil {
		return nil, &Error{BMC: ep.String(), Op: "client", Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, &Error{BMC: ep.String(), Op: "client", Kind: ErrClosed}
	}
	key := ep.String()
	if c, ok := m.clients[key]; ok {
		c.setEndpoint(ep)
		return c, nil
	}
	c, err := newClient(m, ep)
	if err != nil {
		return nil, err
	}
	m.clients[key] = c
	return c, nil
}

// Open returns the Client of ep's BMC after checking, within Timeout, that
// the BMC answers and accepts the credentials.
func (m *Manager) Open(ctx context.Context, ep Endpoint) (*Client, error) {
	c, err := m.Client(ep)
	if err != nil {
		return nil, err
	}
	if err := c.Open(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Health returns what is known of every BMC's health, by endpoint.
func (m *Manager) Health() map[string]Health {
	m.mu.Lock()
	cs := make([]*Client, 0, len(m.clients))
	for _, c := range m.clients {
		cs = append(cs, c)
	}
	m.mu.Unlock()
	out := make(map[string]Health, len(cs))
	for _, c := range cs {
		out[c.key] = c.Health()
	}
	return out
}

// Forget closes ep's Client and drops it with its metrics.
func (m *Manager) Forget(ctx context.Context, ep Endpoint) error {
	m.mu.Lock()
	c := m.clients[ep.String()]
	m.mu.Unlock()
	if c == nil {
		return nil
	}
	return c.Close(ctx)
}

// Close closes every Client (logging out of Redfish sessions). Safe to
// call twice.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	cs := make([]*Client, 0, len(m.clients))
	for _, c := range m.clients {
		cs = append(cs, c)
	}
	m.mu.Unlock()
	var errs []error
	for _, c := range cs {
		if err := c.Close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) remove(c *Client) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.clients[c.key] == c {
		delete(m.clients, c.key)
		m.met.up.DeleteLabelValues(c.key)
	}
}

// healthChanged keeps the unhealthy count when a client flips.
func (m *Manager) healthChanged(c *Client, healthy bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if healthy {
		m.unhealthy--
	} else {
		m.unhealthy++
	}
	m.met.unhealthy.Set(float64(m.unhealthy))
}

// backoff is the wait after n consecutive failures: min doubling to max,
// with +-20% jitter.
func backoff(n int, min, max time.Duration) time.Duration {
	d := min
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return jitter(d, 0.2)
}
