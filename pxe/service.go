package pxe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/pin/tftp/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/rackcloud/rackcloud"
)

// Deps are the boot service's collaborators.
type Deps struct {
	// Profiles says which hosts are known; nil means none are (every MAC
	// is unknown). When it also has a Run(ctx) error method (APIClient),
	// the service runs it.
	Profiles ProfileSource
	// Events receives every boot event besides the service's own timeline
	// (e.g. an APIClient forwarding them to the control plane).
	Events EventSink
	// Logger defaults to a discarding logger.
	Logger *slog.Logger
	// Registerer receives the rackcloud_boot_* metrics; nil means a
	// private registry.
	Registerer prometheus.Registerer
	// Gatherer is served on GET /metrics (on the HTTP listener and on
	// Config.MetricsAddr); nil means Registerer when it is also a
	// Gatherer (a *prometheus.Registry, or the private one), else no
	// /metrics.
	Gatherer prometheus.Gatherer
}

// runner is the optional capability of a ProfileSource to run in the
// background (probing, refreshing, sending events).
type runner interface {
	Run(ctx context.Context) error
}

// Service is the boot service: DHCP (full or proxy), TFTP and HTTP on one
// provisioning network, plus router advertisements. Create it with New,
// then Start it; Stop ends it.
type Service struct {
	cfg      Config
	log      *slog.Logger
	m        *metrics
	profiles ProfileSource
	timeline *EventLog
	sink     EventSink
	events   EventSink // Deps.Events, flushed at Stop when it can be
	gatherer prometheus.Gatherer
	leases   *leases
	neigh    sync.Map // netip.Addr -> MAC, learnt from DHCP
	warned   sync.Map // warnOnce keys
	sums     checksums
	now      func() time.Time
	tokens   *bootTokens
	// refusedLog bounds the log lines of refused callbacks: anyone on
	// the provisioning network can send them.
	refusedLog *rate.Limiter

	filesRoot *os.Root
	tftpRoot  *os.Root

	mu        sync.Mutex
	started   bool
	stopped   bool
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closers   []func() error
	tftp      *tftp.Server
	http      *http.Server
	httpBound netip.AddrPort
	metrics   *http.Server // on Config.MetricsAddr; nil without one
	metBound  netip.AddrPort
	tftpBound netip.AddrPort
	errs      chan error
}

// refusedLogBurst is how many refused callbacks are logged a minute.
const refusedLogBurst = 10

// New checks cfg (after WithDefaults) and prepares a service: it opens the
// TFTP root and the files directory, but no socket yet.
func New(cfg Config, d Deps) (*Service, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := d.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	gatherer := d.Gatherer
	if g, ok := reg.(prometheus.Gatherer); ok && gatherer == nil {
		gatherer = g
	}
	s := &Service{
		cfg: cfg, log: log.With("component", "pxe"), profiles: d.Profiles, gatherer: gatherer,
		timeline: NewEventLog(cfg.EventsPerMAC, cfg.EventMACs), now: time.Now,
	}
	tokenFile := ""
	if cfg.StateDir != "" {
		tokenFile = filepath.Join(cfg.StateDir, TokenFileName)
	}
	s.tokens = newBootTokens(tokenFile, s.log, func() time.Time { return s.now() })
	s.refusedLog = rate.NewLimiter(rate.Every(time.Minute/refusedLogBurst), refusedLogBurst)
	s.sink = multiSink{s.timeline, d.Events}
	s.events = d.Events
	if cfg.DHCPMode == DHCPFull {
		s.leases = newLeases(cfg, s.now)
	}
	var err error
	if s.tftpRoot, err = os.OpenRoot(cfg.TFTPRoot); err != nil {
		return nil, fmt.Errorf("pxe: TFTP root (package ipxe): %w", err)
	}
	s.closers = append(s.closers, s.tftpRoot.Close)
	if cfg.FilesDir != "" {
		if s.filesRoot, err = os.OpenRoot(cfg.FilesDir); err != nil {
			s.tftpRoot.Close()
			return nil, fmt.Errorf("pxe: files directory: %w", err)
		}
		s.closers = append(s.closers, s.filesRoot.Close)
	}
	s.m = newMetrics(reg, func() float64 {
		if s.leases == nil {
			return 0
		}
		return float64(s.leases.active())
	}, func() float64 {
		if s.profiles == nil || s.profiles.Reachable() {
			return 1
		}
		return 0
	})
	if s.leases != nil {
		registerPool(reg, s.leases)
	}
	if cfg.MetricsAddr.IsValid() && gatherer == nil {
		s.closeAll()
		return nil, fmt.Errorf("%w: pxe: a metrics address needs a Gatherer", rackcloud.ErrInvalid)
	}
	return s, nil
}

// Config returns the service's defaulted configuration.
func (s *Service) Config() Config { return s.cfg }

// record stamps and stores a boot event. Its text fields are cleaned
// here too (cleanText is idempotent and cheap on clean text): whatever
// path built the event, no NUL or invalid UTF-8 reaches a sink.
func (s *Service) record(e Event) {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	e.IP, e.File = cleanText(e.IP, maxPeerText), cleanText(e.File, maxPeerText)
	e.Detail, e.Error = cleanText(e.Detail, maxPeerText), cleanText(e.Error, maxPeerText)
	s.m.events.WithLabelValues(string(e.Kind)).Inc()
	s.sink.Record(e)
}

// Timeline returns mac's recorded boot events, oldest first.
func (s *Service) Timeline(mac string) []Event { return s.timeline.Timeline(mac) }

// Leases returns the DHCP leases (full mode), ordered by address.
func (s *Service) Leases() []Lease {
	if s.leases == nil {
		return nil
	}
	return s.leases.all()
}

// HTTPAddr is the address HTTP listens on (the bound port when the
// configured one was 0).
func (s *Service) HTTPAddr() netip.AddrPort { return s.httpAddr() }

// MetricsAddr is the address the metrics listener listens on (the bound
// port when the configured one was 0); invalid without Config.MetricsAddr.
func (s *Service) MetricsAddr() netip.AddrPort { return s.boundOr(&s.metBound, s.cfg.MetricsAddr) }

// TFTPAddr is the address TFTP listens on (the bound port when the
// configured one was 0).
func (s *Service) TFTPAddr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tftpBound.IsValid() {
		return netip.AddrPortFrom(s.tftpBound.Addr().Unmap(), s.tftpBound.Port())
	}
	return s.cfg.TFTPAddr
}

func (s *Service) httpAddr() netip.AddrPort { return s.boundOr(&s.httpBound, s.cfg.HTTPAddr) }

// boundOr returns *bound (set under s.mu once listening), else configured.
func (s *Service) boundOr(bound *netip.AddrPort, configured netip.AddrPort) netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	if bound.IsValid() {
		return *bound
	}
	return configured
}

// Start opens every socket (inside Config.Netns when set), loads the
// leases, and serves in the background until ctx ends or Stop is called.
// It returns once everything listens, or the first error (having closed
// what it opened).
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("pxe: service already started")
	}
	s.started = true
	s.mu.Unlock()

	var err error
	if s.leases != nil {
		if err := os.MkdirAll(s.cfg.StateDir, 0o755); err != nil {
			s.closeAll()
			return fmt.Errorf("pxe: state directory: %w", err)
		}
		if err := s.leases.open(s.cfg.StateDir); err != nil {
			s.closeAll()
			return fmt.Errorf("pxe: %w", err)
		}
	}

	var (
		dhcpConn, proxyConn *net.UDPConn
		tftpConn            *net.UDPConn
		httpLn              net.Listener
		ra                  *raSender
	)
	err = inNetns(s.cfg.Netns, func() error {
		var err error
		if s.cfg.DHCPMode != DHCPOff {
			if dhcpConn, err = server4.NewIPv4UDPConn(s.cfg.Interface, &net.UDPAddr{Port: s.cfg.DHCPPort}); err != nil {
				return fmt.Errorf("DHCP on %s port %d: %w", s.cfg.Interface, s.cfg.DHCPPort, err)
			}
			s.closers = append(s.closers, dhcpConn.Close)
			growReadBuffer(dhcpConn, dhcpReadBuffer)
		}
		if s.cfg.DHCPMode == DHCPProxy {
			if proxyConn, err = server4.NewIPv4UDPConn(s.cfg.Interface, &net.UDPAddr{Port: s.cfg.ProxyPort}); err != nil {
				return fmt.Errorf("proxyDHCP on %s port %d: %w", s.cfg.Interface, s.cfg.ProxyPort, err)
			}
			s.closers = append(s.closers, proxyConn.Close)
		}
		if tftpConn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(s.cfg.TFTPAddr)); err != nil {
			return fmt.Errorf("TFTP on %v: %w", s.cfg.TFTPAddr, err)
		}
		s.closers = append(s.closers, tftpConn.Close)
		if httpLn, err = net.Listen("tcp", s.cfg.HTTPAddr.String()); err != nil {
			return fmt.Errorf("HTTP on %v: %w", s.cfg.HTTPAddr, err)
		}
		s.closers = append(s.closers, httpLn.Close)
		if s.cfg.RAInterval > 0 {
			if ra, err = openRA(s.cfg.Interface, s.cfg.Netns, s.cfg.RAInterval); err != nil {
				return err
			}
			ra.log, ra.sent = s.log, s.m.raSent.Inc
			s.closers = append(s.closers, ra.close)
		}
		return nil
	})
	var metricsLn net.Listener
	if err == nil && s.cfg.MetricsAddr.IsValid() {
		// In this process's own namespace, not Netns.
		if metricsLn, err = net.Listen("tcp", s.cfg.MetricsAddr.String()); err != nil {
			err = fmt.Errorf("metrics on %v: %w", s.cfg.MetricsAddr, err)
		} else {
			s.closers = append(s.closers, metricsLn.Close)
		}
	}
	if err != nil {
		s.closeAll()
		return fmt.Errorf("pxe: %w", err)
	}
	bound, _ := netip.ParseAddrPort(httpLn.Addr().String())
	s.mu.Lock()
	s.httpBound = netip.AddrPortFrom(s.cfg.HTTPAddr.Addr(), bound.Port())
	s.tftpBound = tftpConn.LocalAddr().(*net.UDPAddr).AddrPort()
	if metricsLn != nil {
		mb, _ := netip.ParseAddrPort(metricsLn.Addr().String())
		s.metBound = netip.AddrPortFrom(s.cfg.MetricsAddr.Addr(), mb.Port())
	}
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	s.errs = make(chan error, 8)
	goRun := func(f func()) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			f()
		}()
	}

	if dhcpConn != nil {
		work := make(chan dhcpPacket, dhcpBacklog)
		var readers sync.WaitGroup
		readers.Add(1)
		goRun(func() { defer readers.Done(); s.serveDHCP(dhcpConn, false, work) })
		if proxyConn != nil {
			readers.Add(1)
			goRun(func() { defer readers.Done(); s.serveDHCP(proxyConn, true, work) })
		}
		goRun(func() { readers.Wait(); close(work) })
		for range dhcpWorkers {
			goRun(func() { s.dhcpWorker(ctx, work) })
		}
	}
	if s.leases != nil {
		goRun(func() { s.flushLeases(ctx) })
	}
	s.tftp = s.newTFTPServer()
	goRun(func() {
		if err := s.serveTFTP(s.tftp, tftpConn); err != nil {
			s.errs <- fmt.Errorf("tftp: %w", err)
		}
	})
	s.http = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	goRun(func() {
		if err := s.http.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.errs <- fmt.Errorf("http: %w", err)
		}
	})
	if metricsLn != nil {
		s.metrics = &http.Server{Handler: s.metricsHandler(), ReadHeaderTimeout: 10 * time.Second}
		goRun(func() {
			if err := s.metrics.Serve(metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.errs <- fmt.Errorf("metrics http: %w", err)
			}
		})
	}
	if ra != nil {
		goRun(func() { ra.run(ctx) })
	}
	if r, ok := s.profiles.(runner); ok {
		goRun(func() {
			if err := r.Run(ctx); err != nil {
				s.log.Error("profile source stopped", "err", err)
			}
		})
	}
	goRun(func() {
		<-ctx.Done()
		s.shutdown()
	})
	s.log.Info("boot service started", "dhcp", s.cfg.DHCPMode, "interface", s.cfg.Interface,
		"server", s.cfg.ServerIP, "tftp", s.cfg.TFTPAddr, "http", s.HTTPAddr(), "metrics", s.MetricsAddr(), "netns", s.cfg.Netns,
		"auto_discovery", s.cfg.AutoDiscovery)
	return nil
}

// Err returns a channel that receives a server's fatal error.
func (s *Service) Err() <-chan error { return s.errs }

// shutdown closes the listeners and stops the servers (idempotent).
func (s *Service) shutdown() {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return
	}
	s.stopped = true
	s.mu.Unlock()
	for _, srv := range []*http.Server{s.http, s.metrics} {
		if srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), DefaultShutdownWait)
			_ = srv.Shutdown(ctx)
			cancel()
		}
	}
	s.closeAll()
	if s.tftp != nil {
		s.tftp.Shutdown()
	}
}

func (s *Service) closeAll() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		_ = s.closers[i]()
	}
	s.closers = nil
}

// Stop stops serving, waits for the servers and writes the leases. Safe to
// call twice, and before Start.
func (s *Service) Stop() error {
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	s.wg.Wait()
	// Events recorded while the servers drained (after the event sink's
	// own loop ended) are kept by a sink that can keep them.
	if f, ok := s.events.(interface{ Flush() }); ok {
		f.Flush()
	}
	if s.leases != nil {
		if err := s.leases.close(); err != nil {
			return fmt.Errorf("pxe: %w", err)
		}
	}
	return nil
}

// flushLeases puts lease changes on disk as they come, in groups: the
// changes made while one fsync runs go together into the next.
func (s *Service) flushLeases(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.leases.dirty:
		}
		if err := s.leases.flush(false); err != nil {
			s.log.Error("DHCP acks held back", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			s.leases.poke()
		}
	}
}

func isNotFound(err error) bool { return errors.Is(err, rackcloud.ErrNotFound) }

// dhcpReadBuffer absorbs a rack powering on at once (a few hundred
// packets) without drops.
const dhcpReadBuffer = 4 << 20

// growReadBuffer asks for a receive buffer of n bytes: SO_RCVBUFFORCE when
// privileged (beyond net.core.rmem_max), else as much as SO_RCVBUF gives.
func growReadBuffer(c *net.UDPConn, n int) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	var forced bool
	_ = raw.Control(func(fd uintptr) {
		forced = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n) == nil
	})
	if !forced {
		_ = c.SetReadBuffer(n)
	}
}
