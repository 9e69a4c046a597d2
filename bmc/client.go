package bmc

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	bmclibbmc "github.com/bmc-toolbox/bmclib/v2/bmc"
	"golang.org/x/time/rate"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc/ipmilan"
	"github.com/rackcloud/rackcloud/bmc/rmcp"
)

// Client talks to one BMC. It is safe for concurrent use: calls take
// turns (one request at a time), respect the BMC's rate limit and back-off,
// and each is bounded by Config.Timeout and the caller's context.
type Client struct {
	m   *Manager
	key string
	sem chan struct{} // one request at a time
	lim *rate.Limiter

	mu        sync.Mutex // guards the fields below
	ep        Endpoint
	host      string
	port      int
	bc        *bmclib.Client
	native    *ipmilan.Conn // in bc's registry; nil for Redfish or IPMIIpmitool
	opened    bool
	health    Health
	unhealthy bool // counted in Manager.unhealthy
	closed    bool
}

func newClient(m *Manager, ep Endpoint) (*Client, error) {
	c := &Client{
		m:   m,
		key: ep.String(),
		sem: make(chan struct{}, 1),
		lim: rate.NewLimiter(m.cfg.Rate, m.cfg.Burst),
	}
	c.setEndpointLocked(ep)
	return c, nil
}

// Endpoint returns the BMC's endpoint.
func (c *Client) Endpoint() Endpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ep
}

// Health returns what is known of the BMC's health.
func (c *Client) Health() Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.health
}

func (c *Client) setEndpoint(ep Endpoint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ep.Username == c.ep.Username && ep.Password.Equal(c.ep.Password) {
		return
	}
	old := c.bc
	c.setEndpointLocked(ep)
	c.health.BackoffUntil = time.Time{}
	c.health.ConsecutiveFailures = 0
	if old != nil {
		go func() { // the old session, if any; bounded by Timeout
			ctx, cancel := context.WithTimeout(context.Background(), c.m.cfg.Timeout)
			defer cancel()
			_ = old.Close(ctx)
		}()
	}
}

func (c *Client) setEndpointLocked(ep Endpoint) {
	c.ep = ep
	c.host, c.port, _ = ep.hostPort() // validated by Manager.Client
	c.bc, c.native = c.newBMCLib()
	c.opened = false
}

// newBMCLib builds a bmclib client restricted to the endpoint's protocol,
// so that no other provider probes the BMC. For IPMI, ipmilan's provider
// is registered in bmclib's registry and preferred to ipmitool's, which
// stays behind it: bmclib asks ipmitool only when ipmilan fails.
func (c *Client) newBMCLib() (*bmclib.Client, *ipmilan.Conn) {
	cfg := c.m.cfg
	opts := []bmclib.Option{bmclib.WithPerProviderTimeout(cfg.Timeout)}
	provider := "ipmitool"
	if c.ep.Protocol == rackcloud.BMCRedfish {
		provider = "gofish"
		opts = append(opts,
			bmclib.WithRedfishPort(strconv.Itoa(c.port)),
			bmclib.WithRedfishUseBasicAuth(cfg.RedfishBasicAuth),
			bmclib.WithHTTPClient(c.httpClient()))
	} else {
		opts = append(opts,
			bmclib.WithIpmitoolPort(strconv.Itoa(c.port)),
			bmclib.WithIpmitoolCipherSuite(cfg.CipherSuite),
			bmclib.WithIpmitoolPath(cfg.IpmitoolPath))
	}
	bc := bmclib.NewClient(c.host, c.ep.Username, c.ep.Password.Reveal(), opts...)
	if c.ep.Protocol == rackcloud.BMCIPMI && cfg.IPMIProvider == IPMINative {
		suite, _ := strconv.Atoi(cfg.CipherSuite) // validated by Config.withDefaults
		native, err := ipmilan.New(ipmilan.Config{Host: c.host, Port: c.port, Username: c.ep.Username,
			Password: c.ep.Password.Reveal(), CipherSuite: suite})
		if err == nil { // else a suite ipmilan lacks: ipmitool alone
			ipmilan.Register(bc.Registry, native)
			bc.Registry.Drivers = append(bc.Registry.For(ipmilan.ProviderName), bc.Registry.For(provider)...)
			return bc, native
		}
	}
	bc.Registry.Drivers = bc.Registry.For(provider)
	return bc, nil
}

// httpClient is the Redfish HTTP client: TLS per Config, no proxy (BMCs
// sit on management networks), every phase bounded by Timeout.
func (c *Client) httpClient() *http.Client {
	cfg := c.m.cfg
	d := &net.Dialer{Timeout: cfg.Timeout}
	return &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			DialContext:           d.DialContext,
			TLSClientConfig:       &tls.Config{RootCAs: cfg.RootCAs, InsecureSkipVerify: cfg.InsecureTLS, MinVersion: tls.VersionTLS12}, //nolint:gosec // InsecureTLS is an explicit choice
			TLSHandshakeTimeout:   cfg.Timeout,
			ResponseHeaderTimeout: cfg.Timeout,
			MaxIdleConnsPerHost:   1,
			IdleConnTimeout:       30 * time.Second,
		},
	}
}

// call is what one operation learned, for logs and metrics.
type call struct {
	provider  string   // who answered
	attempted []string // providers tried
	via       string   // "bmclib" or "direct"
	// stale: the credentials changed while the call ran, so its outcome
	// says nothing about the BMC's health with the new ones.
	stale bool
}

// opFunc is one operation against the BMC. It runs in its own goroutine,
// which owns the BMC's turn until it returns: it must honour ctx, and
// return its result rather than write to the caller's variables.
type opFunc func(ctx context.Context, cl *call) (any, error)

// do runs fn as operation op: back-off, turn, rate limit, timeout, then
// classification, health, metrics and a log record.
func (c *Client) do(ctx context.Context, op string, fn opFunc) (any, error) {
	return c.doOpen(ctx, op, true, fn)
}

// doDirect is do for operations that do not go through bmclib (sensors,
// identity): no bmclib session is opened first.
func (c *Client) doDirect(ctx context.Context, op string, fn opFunc) (any, error) {
	return c.doOpen(ctx, op, false, fn)
}

func (c *Client) doOpen(ctx context.Context, op string, needOpen bool, fn opFunc) (any, error) {
	start := time.Now()
	cl := &call{}
	v, err := c.run(ctx, op, needOpen, cl, fn)
	c.record(ctx, op, start, cl, err)
	return v, err
}

func (c *Client) run(ctx context.Context, op string, needOpen bool, cl *call, fn opFunc) (any, error) {
	c.mu.Lock()
	closed := c.closed
	until := c.health.BackoffUntil
	last := c.health.Error
	c.mu.Unlock()
	if closed {
		return nil, &Error{BMC: c.key, Op: op, Kind: ErrClosed}
	}
	if err := ctx.Err(); err != nil {
		return nil, &Error{BMC: c.key, Op: op, Err: err}
	}
	// Back-off: wait if the caller can, else say so at once.
	if wait := time.Until(until); wait > 0 {
		if dl, ok := ctx.Deadline(); ok && dl.Before(until) {
			return nil, &Error{BMC: c.key, Op: op, Kind: ErrBackoff, Err: fmt.Errorf("next try in %s; last error: %s", wait.Round(time.Millisecond), last)}
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, &Error{BMC: c.key, Op: op, Err: err}
		}
	}
	ctx, cancel := context.WithTimeoutCause(ctx, c.m.cfg.Timeout, fmt.Errorf("%w: %s after %s", ErrTimeout, op, c.m.cfg.Timeout))
	defer cancel()
	// One request at a time per BMC.
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, &Error{BMC: c.key, Op: op, Err: ctx.Err()}
		}
		return nil, &Error{BMC: c.key, Op: op, Kind: ErrBusy, Err: errors.New("deadline passed while waiting for the BMC's turn")}
	}
	release := func() { <-c.sem }
	if err := c.lim.Wait(ctx); err != nil {
		release()
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, &Error{BMC: c.key, Op: op, Err: ctx.Err()}
		}
		return nil, &Error{BMC: c.key, Op: op, Kind: ErrBusy, Err: fmt.Errorf("rate limit: %v", err)}
	}
	c.mu.Lock()
	ep, bc, opened := c.ep, c.bc, c.opened
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		cl.stale = c.bc != bc
		c.mu.Unlock()
	}()

	// The operation runs in a goroutine that keeps the BMC's turn until it
	// ends, so that the caller gets its answer when ctx ends even where a
	// library does not honour ctx (gofish requests after login are bounded
	// only by the HTTP client's Timeout): no second request reaches the
	// BMC before the first is over.
	type outcome struct {
		v   any
		cl  call
		err error
	}
	ch := make(chan outcome, 1)
	go func() {
		defer release()
		var o outcome
		if needOpen && !opened {
			if o.err = c.open(ctx, bc, &o.cl); o.err != nil {
				ch <- o
				return
			}
		}
		o.v, o.err = fn(ctx, &o.cl)
		ch <- o
	}()
	select {
	case o := <-ch:
		*cl = o.cl
		if o.err != nil {
			return nil, c.wrap(ctx, op, ep, o.err)
		}
		return o.v, nil
	case <-ctx.Done():
		return nil, c.wrap(ctx, op, ep, context.Cause(ctx))
	}
}

// wrap turns a failure into an *Error with its kind and no password.
func (c *Client) wrap(ctx context.Context, op string, ep Endpoint, err error) error {
	var be *Error
	if errors.As(err, &be) && be.Kind != nil {
		return be
	}
	kind := c.classify(ctx, ep, err)
	if kind == nil && ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			kind = ErrTimeout
		} else {
			return &Error{BMC: c.key, Op: op, Err: redactErr(errors.Join(ctx.Err(), err), ep.Password)}
		}
	}
	if kind != nil && (kind == ErrAuth || kind == ErrUnreachable || kind == ErrTimeout || kind == ErrTLS) && ep.Protocol == rackcloud.BMCRedfish {
		c.mu.Lock()
		c.opened = false // log in again next time
		c.mu.Unlock()
	}
	// A timeout is the BMC's fault when Config.Timeout ran out, not when
	// the caller's own, shorter deadline did.
	callers := kind == ErrTimeout && ctx.Err() != nil && !errors.Is(context.Cause(ctx), ErrTimeout)
	detail := redactErr(err, ep.Password)
	rc := reasonCtx{protocol: ep.Protocol, address: net.JoinHostPort(c.host, strconv.Itoa(c.port)), op: op,
		timeout: c.m.cfg.Timeout}
	if ep.Protocol == rackcloud.BMCIPMI {
		rc.cipherSuite = c.m.cfg.CipherSuite
	}
	if callers {
		rc.timeout = 0 // the caller's deadline, not the BMC's timeout
	}
	return &Error{BMC: c.key, Op: op, Kind: kind, Err: detail, callerDeadline: callers, reason: reasonFor(kind, rc, detail)}
}

// classify finds the kind of a failure, or nil.
func (c *Client) classify(ctx context.Context, ep Endpoint, err error) error {
	var be *Error
	if errors.As(err, &be) && be.Kind != nil {
		return be.Kind
	}
	if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return ErrTimeout
	}
	if errors.Is(err, ErrBadResponse) {
		return ErrBadResponse
	}
	if errors.Is(err, ErrUnsupported) {
		return ErrUnsupported
	}
	if ep.Protocol == rackcloud.BMCRedfish {
		return classifyRedfish(err)
	}
	if k := classifyNative(err); k != nil {
		return k
	}
	switch classifyIPMIText(err.Error()) {
	case ipmiCipher:
		return ErrCipher
	case ipmiAuth:
		return ErrAuth
	case ipmiUnreachable:
		return ErrUnreachable
	case ipmiSession:
		// ipmitool says the same for a wrong password and for silence:
		// ask the BMC, without credentials, whether it is there.
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if rmcp.Ping(pctx, net.JoinHostPort(c.host, strconv.Itoa(c.port))) == nil {
			return ErrAuth
		}
		if ctx.Err() != nil {
			return ErrTimeout
		}
		return ErrUnreachable
	}
	return nil
}

// record updates health, metrics and logs for one finished operation.
func (c *Client) record(ctx context.Context, op string, start time.Time, cl *call, err error) {
	took := time.Since(start)
	res := result(err)
	met := c.m.met
	met.requests.WithLabelValues(op, res).Inc()
	met.duration.WithLabelValues(op).Observe(took.Seconds())

	var flipped, healthy bool
	now := time.Now()
	c.mu.Lock()
	switch {
	case cl.stale:
	case err == nil || healthKind(err):
		c.health.LastAttempt = now
	}
	switch {
	case cl.stale:
	case err == nil:
		c.health.Healthy = true
		c.health.Error = ""
		c.health.Kind = nil
		c.health.ConsecutiveFailures = 0
		c.health.LastSuccess = now
		c.health.BackoffUntil = time.Time{}
		flipped, healthy = c.unhealthy, true
		c.unhealthy = false
	case healthKind(err):
		var be *Error
		if errors.As(err, &be) {
			c.health.Kind = be.Kind
		}
		c.health.Healthy = false
		c.health.Error = Reason(err)
		c.health.ConsecutiveFailures++
		c.health.BackoffUntil = now.Add(backoff(c.health.ConsecutiveFailures, c.m.cfg.BackoffMin, c.m.cfg.BackoffMax))
		flipped, healthy = !c.unhealthy, false
		c.unhealthy = true
	}
	closed := c.closed
	c.mu.Unlock()
	if (err == nil || healthKind(err)) && !closed && !cl.stale {
		up := 0.0
		if err == nil {
			up = 1
		}
		met.up.WithLabelValues(c.key).Set(up)
	}
	if flipped {
		c.m.healthChanged(c, healthy)
	}

	attrs := []slog.Attr{
		slog.String("bmc", c.key), slog.String("op", op), slog.String("result", res),
		slog.Duration("took", took),
	}
	if cl.via != "" {
		attrs = append(attrs, slog.String("via", cl.via))
	}
	if cl.provider != "" {
		attrs = append(attrs, slog.String("provider", cl.provider))
	}
	if len(cl.attempted) > 0 {
		attrs = append(attrs, slog.Any("providers_attempted", cl.attempted))
	}
	if cl.stale {
		attrs = append(attrs, slog.Bool("stale_credentials", true))
	}
	level := slog.LevelDebug
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
		if healthKind(err) {
			level = slog.LevelWarn
		}
	}
	c.m.log.LogAttrs(ctx, level, "bmc call", attrs...)
}

// note copies bmclib's metadata into the call record.
func (cl *call) note(md bmclibbmc.Metadata) {
	cl.via = "bmclib"
	cl.provider = md.SuccessfulProvider
	if cl.provider == "" && len(md.SuccessfulOpenConns) > 0 {
		cl.provider = strings.Join(md.SuccessfulOpenConns, ",")
	}
	cl.attempted = md.ProvidersAttempted
}

// Open checks that the BMC answers and accepts the credentials (for
// Redfish, it logs in). Other calls open on demand; Open makes the check
// explicit.
func (c *Client) Open(ctx context.Context) error {
	_, err := c.doDirect(ctx, "open", func(ctx context.Context, cl *call) (any, error) {
		c.mu.Lock()
		bc := c.bc
		c.mu.Unlock()
		return nil, c.open(ctx, bc, cl)
	})
	return err
}

func (c *Client) open(ctx context.Context, bc *bmclib.Client, cl *call) error {
	if c.Endpoint().Protocol == rackcloud.BMCRedfish {
		// bmclib sets the session's HTTP timeout, for every later request,
		// to what is left of this context: make that Config.Timeout, not
		// whatever the first caller had left. The caller still gets its
		// answer when its own context ends (see run).
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), c.m.cfg.Timeout)
		defer cancel()
	}
	err := bc.Open(ctx)
	cl.note(bc.GetMetadata())
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.bc == bc {
		c.opened = true
	}
	c.mu.Unlock()
	return nil
}

// Close logs out (Redfish) and drops the client from its Manager. Safe to
// call twice.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	bc, native, opened, counted := c.bc, c.native, c.opened, c.unhealthy
	c.unhealthy = false
	c.mu.Unlock()
	if native != nil {
		// The session may be open without bmclib's Open (sensors); its
		// Close lets a request in flight end first.
		defer native.Close(ctx)
	}
	c.m.remove(c)
	if counted {
		c.m.healthChanged(c, true)
	}
	ctx, cancel := context.WithTimeout(ctx, c.m.cfg.Timeout)
	defer cancel()
	select { // wait for the request in flight, bounded by Timeout
	case c.sem <- struct{}{}:
		defer func() { <-c.sem }()
	case <-ctx.Done():
		return nil
	}
	if !opened {
		return nil
	}
	return bc.Close(ctx)
}

func (c *Client) bmclib() *bmclib.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bc
}

// PowerState reads the machine's power state.
func (c *Client) PowerState(ctx context.Context) (rackcloud.PowerState, error) {
	v, err := c.do(ctx, "power-status", func(ctx context.Context, cl *call) (any, error) {
		return c.powerState(ctx, cl)
	})
	if err != nil {
		return rackcloud.PowerUnknown, err
	}
	return v.(rackcloud.PowerState), nil
}

func (c *Client) powerState(ctx context.Context, cl *call) (rackcloud.PowerState, error) {
	bc := c.bmclib()
	raw, err := bc.GetPowerState(ctx)
	cl.note(bc.GetMetadata())
	if err != nil {
		return rackcloud.PowerUnknown, err
	}
	st, err := ParsePowerState(raw)
	if err != nil {
		return rackcloud.PowerUnknown, err
	}
	return st, nil
}

// SetPower changes the machine's power. PowerCycle powers on a machine
// that is off. The BMC may take a while to act: WaitPower or EnsurePower
// confirm the result.
func (c *Client) SetPower(ctx context.Context, a PowerAction) error {
	if err := a.validate(); err != nil {
		return &Error{BMC: c.key, Op: "set-power", Err: err}
	}
	_, err := c.do(ctx, "set-power-"+string(a), func(ctx context.Context, cl *call) (any, error) {
		bc := c.bmclib()
		act := a
		if act == PowerCycle {
			st, err := c.powerState(ctx, cl)
			if err != nil {
				return nil, err
			}
			if st == rackcloud.PowerOff {
				act = PowerOn
			}
		}
		ok, err := bc.SetPowerState(ctx, string(act))
		cl.note(bc.GetMetadata())
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: power %s not acknowledged", ErrBadResponse, act)
		}
		return nil, nil
	})
	return err
}

// SetBootDevice sets the device of the next boot (or every boot with
// Persistent).
func (c *Client) SetBootDevice(ctx context.Context, d BootDevice, o BootOptions) error {
	if d != BootPXE && d != BootDisk {
		return &Error{BMC: c.key, Op: "set-boot", Err: fmt.Errorf("%w: boot device %q (want pxe or disk)", rackcloud.ErrInvalid, d)}
	}
	_, err := c.do(ctx, "set-boot", func(ctx context.Context, cl *call) (any, error) {
		bc := c.bmclib()
		ok, err := bc.SetBootDevice(ctx, string(d), o.Persistent, o.EFI)
		cl.note(bc.GetMetadata())
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: boot device %s not acknowledged", ErrBadResponse, d)
		}
		return nil, nil
	})
	return err
}

// WaitPower polls the power state, with growing jittered intervals, until
// it is want. When ctx ends first it returns ErrPowerMismatch with the last
// state the BMC reported. Refused credentials end the wait at once; other
// errors are retried (BMCs are often busy during a power change).
func (c *Client) WaitPower(ctx context.Context, want rackcloud.PowerState) error {
	interval := c.m.cfg.PowerPoll
	last := rackcloud.PowerUnknown
	var lastErr error
	for {
		st, err := c.PowerState(ctx)
		switch {
		case err == nil && st == want:
			return nil
		case err == nil:
			last, lastErr = st, nil
		case errors.Is(err, ErrAuth) || errors.Is(err, ErrCipher) || errors.Is(err, ErrTLS) || errors.Is(err, rackcloud.ErrInvalid) || errors.Is(err, ErrClosed):
			return err
		default:
			lastErr = err
		}
		if ctx.Err() == nil {
			if err := sleep(ctx, jitter(interval, 0.25)); err == nil {
				interval = min(interval*3/2, 4*c.m.cfg.PowerPoll)
				continue
			}
		}
		detail := fmt.Errorf("reports %s, want %s: %w", last, want, context.Cause(ctx))
		if lastErr != nil {
			detail = fmt.Errorf("reports %s, want %s (last error: %v): %w", last, want, lastErr, context.Cause(ctx))
		}
		err = &Error{BMC: c.key, Op: "wait-power", Kind: ErrPowerMismatch, Err: detail}
		c.m.met.requests.WithLabelValues("wait-power", result(err)).Inc()
		return err
	}
}

// EnsurePower powers the machine on or off (want is PowerOn or PowerOff)
// unless it already is, and waits until the BMC reports it.
func (c *Client) EnsurePower(ctx context.Context, want rackcloud.PowerState) error {
	var a PowerAction
	switch want {
	case rackcloud.PowerOn:
		a = PowerOn
	case rackcloud.PowerOff:
		a = PowerOff
	default:
		return &Error{BMC: c.key, Op: "ensure-power", Err: fmt.Errorf("%w: power state %q", rackcloud.ErrInvalid, want)}
	}
	if err := c.SetPower(ctx, a); err != nil {
		return err
	}
	return c.WaitPower(ctx, want)
}

// ParsePowerState normalises what BMCs report: ipmitool's text ("Chassis
// Power is on"), Redfish PowerState values (On, Off, PoweringOn,
// PoweringOff, Paused) and plain on/off. Anything else is ErrBadResponse.
func ParsePowerState(s string) (rackcloud.PowerState, error) {
	for _, line := range strings.Split(s, "\n") {
		l := strings.ToLower(strings.TrimSpace(line))
		if rest, ok := strings.CutPrefix(l, "chassis power is "); ok {
			switch rest {
			case "on":
				return rackcloud.PowerOn, nil
			case "off":
				return rackcloud.PowerOff, nil
			}
		}
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "on", "poweringon", "paused":
		return rackcloud.PowerOn, nil
	case "off", "poweringoff":
		return rackcloud.PowerOff, nil
	}
	q := s
	if len(q) > 80 {
		q = q[:80] + "..."
	}
	return rackcloud.PowerUnknown, fmt.Errorf("%w: power state %q", ErrBadResponse, q)
}

// jitter returns d scaled by a random factor in [1-f, 1+f].
func jitter(d time.Duration, f float64) time.Duration {
	return time.Duration(float64(d) * (1 - f + 2*f*rand.Float64()))
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
