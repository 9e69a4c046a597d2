package pxe

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackcloud/rackcloud"
)

// Defaults for APIConfig.
const (
	DefaultAPITimeout     = 2 * time.Second
	DefaultAPIRetry       = 2 * time.Second
	DefaultAPIRetryMax    = time.Minute
	DefaultPoisonAfter    = 3
	DefaultProfileRefresh = time.Minute
	DefaultEventQueue     = 10000
	DefaultEventBatch     = 500
)

// API paths the boot service calls (see the package documentation).
const (
	ProfilesPath = "/v1/boot/profiles/" // + {mac}
	EventsPath   = "/v1/boot/events"
)

// APIConfig configures APIClient.
type APIConfig struct {
	// BaseURL is the control plane's API, e.g. http://10.0.0.10:8080.
	BaseURL string
	// Token is sent as "Authorization: Bearer"; it is never logged.
	Token string
	// CacheFile keeps every profile seen, so that a restarted boot service
	// still boots its known hosts while the API is down. Empty keeps the
	// cache in memory only.
	CacheFile string
	// SpoolFile keeps the events not yet delivered while the API is
	// unreachable (written every Retry and when Run ends, removed once
	// they are delivered), so that a restarted boot service still sends
	// them. Empty means CacheFile + ".events", or memory only without a
	// CacheFile.
	SpoolFile string
	// CAFile is a PEM bundle of the CAs the API's TLS certificate may be
	// signed by, trusted besides the system's. It cannot go with Client.
	CAFile string
	// Timeout bounds one API request.
	Timeout time.Duration
	// Retry is how often an unreachable API is probed, and the first
	// pause before events the API did not take (5xx, no answer, 401, 403,
	// 429) are sent again; the pause doubles, with jitter, up to RetryMax.
	Retry    time.Duration
	RetryMax time.Duration
	// PoisonAfter is how many 5xx answers in a row to the same batch make
	// the client look for a poisoned event (an API that fails on one event
	// and would otherwise be sent it forever): it splits the batch until
	// the events the API takes are delivered, and drops (and counts, with
	// reason server_error) an event that alone got a 5xx PoisonAfter
	// times in a row while the API answered a profile lookup. Zero means
	// DefaultPoisonAfter.
	PoisonAfter int
	// Refresh is how often cached profiles are re-read while the API is
	// reachable, so that the cache follows state changes.
	Refresh time.Duration
	// EventQueue bounds the events waiting to be sent; the oldest are
	// dropped (and counted) when it is full.
	EventQueue int
	// Client is the HTTP client; nil means a client with Timeout (and
	// CAFile).
	Client *http.Client
	// Registerer receives rackcloud_boot_events_rejected_total; nil means
	// a private registry.
	Registerer prometheus.Registerer
}

// APIClient talks to the control plane over HTTP: it is a ProfileSource
// that caches every profile it reads (in CacheFile) and answers from the
// cache while the API is unreachable, and an EventSink that queues boot
// events and sends them in order, catching up when the API returns. Run
// must be running for probing, refreshing and sending.
type APIClient struct {
	cfg  APIConfig
	base *url.URL
	log  *slog.Logger
	hc   *http.Client
	m    *clientMetrics

	mu        sync.Mutex
	cache     map[string]Profile
	reachable bool
	lastFail  time.Time
	queue     []Event
	head      uint64 // sequence number of queue[0]
	dropped   int64
	wake      chan struct{}
	persistMu sync.Mutex
	// Event delivery retries: failures is the number of failed rounds in
	// a row, retryAt when the next may start; streak counts the 5xx
	// answers in a row to the batch that starts at sequence streakHead.
	failures   int
	retryAt    time.Time
	streak     int
	streakHead uint64

	spoolMu     sync.Mutex
	spoolDirty  bool // the queue changed since the spool file was written
	spoolExists bool // a spool file may be on disk
}

var (
	_ ProfileSource = (*APIClient)(nil)
	_ EventSink     = (*APIClient)(nil)
)

type cacheFile struct {
	Profiles map[string]Profile `json:"profiles"`
}

// NewAPIClient loads the cache file (a missing file is an empty cache; a
// corrupt one is an error and is left untouched).
func NewAPIClient(cfg APIConfig, log *slog.Logger) (*APIClient, error) {
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultAPITimeout)
	cfg.Retry = cmp.Or(cfg.Retry, DefaultAPIRetry)
	cfg.RetryMax = max(cmp.Or(cfg.RetryMax, DefaultAPIRetryMax), cfg.Retry)
	cfg.PoisonAfter = cmp.Or(cfg.PoisonAfter, DefaultPoisonAfter)
	cfg.Refresh = cmp.Or(cfg.Refresh, DefaultProfileRefresh)
	cfg.EventQueue = cmp.Or(cfg.EventQueue, DefaultEventQueue)
	if cfg.SpoolFile == "" && cfg.CacheFile != "" {
		cfg.SpoolFile = cfg.CacheFile + ".events"
	}
	base, err := url.Parse(strings.TrimSuffix(cfg.BaseURL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("api client: base URL %q: %w: want http(s)://host[:port]", redact(cfg.BaseURL), rackcloud.ErrInvalid)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hc := cfg.Client
	switch {
	case hc != nil && cfg.CAFile != "":
		return nil, fmt.Errorf("api client: a CA file and an HTTP client of its own: %w", rackcloud.ErrInvalid)
	case hc == nil:
		hc = &http.Client{Timeout: cfg.Timeout}
		if cfg.CAFile != "" {
			pool, err := loadCAs(cfg.CAFile)
			if err != nil {
				return nil, err
			}
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
			hc.Transport = tr
		}
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	c := &APIClient{cfg: cfg, base: base, log: log.With("api", base.Redacted()), hc: hc, m: newClientMetrics(reg),
		cache: map[string]Profile{}, reachable: true, wake: make(chan struct{}, 1)}
	if cfg.CacheFile != "" {
		b, err := os.ReadFile(cfg.CacheFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("profile cache: %w", err)
		default:
			var f cacheFile
			if err := json.Unmarshal(b, &f); err != nil {
				return nil, fmt.Errorf("profile cache %s is corrupt (left as is): %w", cfg.CacheFile, err)
			}
			for mac, p := range f.Profiles {
				if norm, err := rackcloud.NormalizeMAC(mac); err == nil {
					p.MAC = norm
					c.cache[norm] = p
				}
			}
		}
	}
	if err := c.loadSpool(); err != nil {
		return nil, err
	}
	return c, nil
}

// loadCAs is the system's CA pool plus the PEM certificates in file.
func loadCAs(file string) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("api client: CA file: %w", err)
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("api client: CA file %s: no PEM certificate in it: %w", file, rackcloud.ErrInvalid)
	}
	return pool, nil
}

// Flush writes the events not yet delivered to the spool file now (the
// boot service calls it once its servers have stopped).
func (c *APIClient) Flush() { c.spool() }

// loadSpool queues the events an earlier run could not deliver. A spool
// that cannot be read must not stop booting: it is logged (a corrupt one
// is moved aside for the operator) and the boot service goes on.
func (c *APIClient) loadSpool() error {
	if c.cfg.SpoolFile == "" {
		return nil
	}
	b, err := os.ReadFile(c.cfg.SpoolFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		c.log.Error("event spool unreadable; its events are not sent", "file", c.cfg.SpoolFile, "err", err)
		return nil
	}
	var evs []Event
	if err := json.Unmarshal(b, &evs); err != nil {
		aside := fmt.Sprintf("%s.corrupt-%d", c.cfg.SpoolFile, time.Now().Unix())
		c.log.Error("event spool is corrupt; moved aside, its events are lost", "file", c.cfg.SpoolFile, "moved_to", aside, "err", err)
		if err := os.Rename(c.cfg.SpoolFile, aside); err != nil {
			c.log.Error("corrupt event spool not moved aside", "err", err)
		}
		return nil
	}
	if len(evs) > c.cfg.EventQueue {
		c.dropped += int64(len(evs) - c.cfg.EventQueue)
		evs = evs[len(evs)-c.cfg.EventQueue:]
	}
	c.queue = evs
	c.spoolExists = true
	if len(evs) > 0 {
		c.log.Info("boot events from an earlier run queued for the API", "events", len(evs))
	}
	return nil
}

// spool writes the undelivered events to the spool file, or removes it
// when none are left. Errors are logged: the events stay queued.
func (c *APIClient) spool() {
	if c.cfg.SpoolFile == "" {
		return
	}
	c.spoolMu.Lock()
	defer c.spoolMu.Unlock()
	c.mu.Lock()
	if !c.spoolDirty {
		c.mu.Unlock()
		return
	}
	evs := append([]Event(nil), c.queue...)
	c.spoolDirty = false
	c.mu.Unlock()
	if len(evs) == 0 {
		if c.spoolExists {
			if err := os.Remove(c.cfg.SpoolFile); err != nil && !errors.Is(err, os.ErrNotExist) {
				c.log.Error("event spool not removed", "err", err)
				c.mu.Lock()
				c.spoolDirty = true // try again, or its events are sent twice
				c.mu.Unlock()
				return
			}
			c.spoolExists = false
		}
		return
	}
	b, err := json.Marshal(evs)
	if err == nil {
		err = writeFileAtomic(c.cfg.SpoolFile, b)
	}
	if err != nil {
		c.log.Error("event spool not written", "events", len(evs), "err", err)
		c.mu.Lock()
		c.spoolDirty = true
		c.mu.Unlock()
		return
	}
	c.spoolExists = true
}

func redact(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}

// Reachable reports whether the last API call got an answer.
func (c *APIClient) Reachable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reachable
}

// Cached returns the number of cached profiles.
func (c *APIClient) Cached() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.cache)
}

// Profile asks the API for mac's profile and caches the answer. While the
// API is unreachable (and until the next probe succeeds) it answers from the
// cache at once, with Cached set; a host missing from the cache then gets
// ErrUnavailable.
func (c *APIClient) Profile(ctx context.Context, mac string) (Profile, error) {
	c.mu.Lock()
	down := !c.reachable
	c.mu.Unlock()
	var ferr error
	if !down {
		p, err := c.fetch(ctx, mac)
		if err == nil || errors.Is(err, rackcloud.ErrNotFound) {
			return p, err
		}
		ferr = err
		c.log.Warn("profile lookup failed, using cache", "mac", mac, "err", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.cache[mac]; ok {
		p.Cached = true
		return p, nil
	}
	if ferr != nil {
		return Profile{}, fmt.Errorf("%w, and not cached: %w", ferr, ErrUnavailable)
	}
	return Profile{}, fmt.Errorf("profile %s: not cached: %w", mac, ErrUnavailable)
}

// fetch GETs one profile and updates the cache and reachability.
func (c *APIClient) fetch(ctx context.Context, mac string) (Profile, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+ProfilesPath+url.PathEscape(mac), nil)
	if err != nil {
		return Profile{}, err
	}
	c.auth(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.setReachable(false)
		return Profile{}, fmt.Errorf("profile %s: %w", mac, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		c.setReachable(false)
		return Profile{}, fmt.Errorf("profile %s: %w", mac, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		c.setReachable(true)
		c.forget(mac)
		return Profile{}, fmt.Errorf("profile %s: %w", mac, rackcloud.ErrNotFound)
	case resp.StatusCode >= 500:
		c.setReachable(false)
		return Profile{}, fmt.Errorf("profile %s: API status %s", mac, resp.Status)
	case resp.StatusCode != http.StatusOK:
		c.setReachable(true)
		return Profile{}, fmt.Errorf("profile %s: API status %s", mac, resp.Status)
	}
	c.setReachable(true)
	var p Profile
	if err := json.Unmarshal(body, &p); err != nil {
		return Profile{}, fmt.Errorf("profile %s: bad JSON from API: %w", mac, err)
	}
	if norm, err := rackcloud.NormalizeMAC(p.MAC); err != nil || norm != mac {
		return Profile{}, fmt.Errorf("profile %s: API answered for MAC %q", mac, p.MAC)
	}
	p.MAC = mac
	if p.State == "" {
		return Profile{}, fmt.Errorf("profile %s: API answered without a state", mac)
	}
	c.remember(p)
	return p, nil
}

func (c *APIClient) auth(req *http.Request) {
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
}

func (c *APIClient) setReachable(ok bool) {
	c.mu.Lock()
	was := c.reachable
	c.reachable = ok
	if !ok {
		c.lastFail = time.Now()
	}
	c.mu.Unlock()
	if was != ok {
		if ok {
			c.log.Info("control plane reachable again")
			c.poke()
		} else {
			c.log.Warn("control plane unreachable: booting known hosts from the cache")
		}
	}
}

func (c *APIClient) remember(p Profile) {
	c.mu.Lock()
	old, had := c.cache[p.MAC]
	if had && old == p {
		c.mu.Unlock()
		return
	}
	c.cache[p.MAC] = p
	snapshot := c.snapshotLocked()
	c.mu.Unlock()
	c.persist(snapshot)
}

func (c *APIClient) forget(mac string) {
	c.mu.Lock()
	if _, had := c.cache[mac]; !had {
		c.mu.Unlock()
		return
	}
	delete(c.cache, mac)
	snapshot := c.snapshotLocked()
	c.mu.Unlock()
	c.persist(snapshot)
}

func (c *APIClient) snapshotLocked() []byte {
	f := cacheFile{Profiles: make(map[string]Profile, len(c.cache))}
	for k, v := range c.cache {
		f.Profiles[k] = v
	}
	b, _ := json.MarshalIndent(f, "", " ")
	return b
}

func (c *APIClient) persist(b []byte) {
	if c.cfg.CacheFile == "" {
		return
	}
	c.persistMu.Lock()
	defer c.persistMu.Unlock()
	if err := writeFileAtomic(c.cfg.CacheFile, b); err != nil {
		c.log.Error("profile cache not saved", "err", err)
	}
}

// Record queues e for the API (POST EventsPath); it never blocks.
func (c *APIClient) Record(e Event) {
	c.mu.Lock()
	if len(c.queue) >= c.cfg.EventQueue {
		c.queue = c.queue[1:]
		c.head++
		c.dropped++
	}
	c.queue = append(c.queue, e)
	c.spoolDirty = true
	c.mu.Unlock()
	c.poke()
}

// Pending returns the number of events not yet accepted by the API.
func (c *APIClient) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

func (c *APIClient) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Run sends queued events, probes the API while it is unreachable and
// refreshes the cached profiles, until ctx ends.
func (c *APIClient) Run(ctx context.Context) error {
	refresh := time.NewTicker(c.cfg.Refresh)
	defer refresh.Stop()
	retry := time.NewTicker(c.cfg.Retry)
	defer retry.Stop()
	for {
		// Events the API did not take wait for their backoff.
		var backoff *time.Timer
		var due <-chan time.Time
		if wait := c.retryWait(); wait > 0 {
			backoff = time.NewTimer(wait)
			due = backoff.C
		}
		select {
		case <-ctx.Done():
			c.spool()
			return nil
		case <-c.wake:
		case <-due:
		case <-retry.C:
			if !c.Reachable() {
				if c.probe(ctx) {
					c.refreshAll(ctx)
				} else {
					c.spool()
				}
			}
		case <-refresh.C:
			c.refreshAll(ctx)
		}
		if backoff != nil {
			backoff.Stop()
		}
		if c.Reachable() && c.retryWait() <= 0 {
			c.sendEvents(ctx)
		}
	}
}

// probe asks for any profile: any HTTP answer means the API is back.
func (c *APIClient) probe(ctx context.Context) bool {
	mac := "00:00:00:00:00:00"
	c.mu.Lock()
	for m := range c.cache {
		mac = m
		break
	}
	c.mu.Unlock()
	_, err := c.fetch(ctx, mac)
	return err == nil || errors.Is(err, rackcloud.ErrNotFound)
}

func (c *APIClient) refreshAll(ctx context.Context) {
	c.mu.Lock()
	macs := make([]string, 0, len(c.cache))
	for m := range c.cache {
		macs = append(macs, m)
	}
	c.mu.Unlock()
	for _, m := range macs {
		if ctx.Err() != nil || !c.Reachable() {
			return
		}
		if _, err := c.fetch(ctx, m); err != nil && !errors.Is(err, rackcloud.ErrNotFound) {
			c.log.Debug("profile refresh failed", "mac", m, "err", err)
		}
	}
}

// writeFileAtomic replaces name with data: write a temporary file in the
// same directory, sync it, rename it over name.
func writeFileAtomic(name string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}
