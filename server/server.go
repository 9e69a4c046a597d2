// Package server is the rackcloud server process: it opens the state store
// (retrying with backoff while the database is down), applies migrations,
// and serves the API, /healthz, /readyz and /metrics until its context ends,
// then shuts down gracefully. cmd/rackcloud binds its flags; tests drive it
// in-process.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/alerts"
	"github.com/rackcloud/rackcloud/api"
	"github.com/rackcloud/rackcloud/availability"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/bmcwatch"
	"github.com/rackcloud/rackcloud/monitor"
	"github.com/rackcloud/rackcloud/nsnet"
	"github.com/rackcloud/rackcloud/provisioner"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
	"github.com/rackcloud/rackcloud/vmctl"
)

// Defaults.
const (
	DefaultListen          = "127.0.0.1:8080"
	DefaultDatabaseURL     = "postgres://rackcloud@127.0.0.1:5432/rackcloud?sslmode=disable"
	DefaultShutdownTimeout = 15 * time.Second
	DefaultRetryMax        = 30 * time.Second
)

// Config is the server's configuration.
type Config struct {
	// Listen is the HTTP address (API, health, metrics).
	Listen string
	// DatabaseURL is the PostgreSQL connection string.
	DatabaseURL string
	// ShutdownTimeout bounds the graceful shutdown.
	ShutdownTimeout time.Duration
	// RetryMax caps the backoff between database connection attempts.
	RetryMax time.Duration
	// SecretKeyFile holds the hex keys that seal BMC passwords at rest
	// (store.LoadSecretKeys: the first seals, every one opens); it is
	// created with a random key when missing. Without it the server
	// refuses to store BMC passwords, unless InsecureThrowawayKey.
	SecretKeyFile string
	// InsecureThrowawayKey, without a SecretKeyFile, seals BMC passwords
	// with a key that lives only as long as the process: every password
	// stored is unreadable after a restart. For throwaway test servers.
	InsecureThrowawayKey bool
	// TLSCertFile and TLSKeyFile (PEM), both or neither, serve HTTPS.
	// Without them the server warns once when it listens on an address
	// other than loopback: bearer tokens and BMC passwords would cross
	// the network in clear.
	TLSCertFile, TLSKeyFile string
	// BootstrapTokenFile, when set and missing, receives a new admin
	// token's secret (mode 0600) once the database is ready; an existing
	// file is left alone. This is how the lab gets its first token.
	BootstrapTokenFile string
	// TaskWorkers is how many tasks this server runs at once (0: the task
	// engine's default; negative: none, the server only submits).
	TaskWorkers int
	// TaskRetention is how long ended tasks are kept (0: the task engine's
	// default of 30 days; negative: forever).
	TaskRetention time.Duration
	// BMCPollInterval is how often each host's BMC is polled for power and
	// health (0: bmc.DefaultPollInterval; negative: no polling).
	BMCPollInterval time.Duration
	// BMCCAFile holds PEM CA certificates that Redfish BMCs' certificates
	// are checked against (empty: the system's roots).
	BMCCAFile string
	// InspectTimeout bounds the wait for a host's inventory once it was
	// powered on into the inspection image (0: the provisioner's default).
	InspectTimeout time.Duration
	// HostOverhead is what an inspected host keeps for itself, never sold
	// (CPU cores, memory, disk), unless the host has its own.
	HostOverhead rackcloud.Resources
	// InstallTimeout and FirstBootTimeout bound the waits of
	// host.provision (0: the provisioner's defaults).
	InstallTimeout, FirstBootTimeout time.Duration
	// RoleTimeout bounds the wait for an installed host's daemon (0: the
	// provisioner's default).
	RoleTimeout time.Duration
	// HostBootURL is the boot service's URL as installed hosts reach it;
	// empty fails host.provision.
	HostBootURL string
	// HostNetns, when set, is the network namespace (a path like
	// /run/netns/prov) in which connections to installed hosts' daemons
	// are opened.
	HostNetns string
	// GuestDrivers run guests by kind (nil: vmctl.DefaultDrivers, libvirt
	// and Docker, and vmctl.BareMetal through the server's BMC access).
	GuestDrivers map[rackcloud.GuestKind]vmctl.Driver
	// GuestReconcile is how often guests are compared with their hosts
	// (0: vmctl's default; negative: never).
	GuestReconcile time.Duration
	// Monitor configures service discovery, fleet metrics and guest
	// stats; the server sets its Pool, Registerer, Problem, Logger,
	// Drivers and Target.
	Monitor monitor.Config
	// Availability configures the availability controller (fence and
	// evacuate dead hosts); the server sets its Pool, BMC, Reach, Logger
	// and Registerer.
	Availability availability.Config
	// Rules, with a Dir, renders the alert rules into a rule file there
	// (one replica at a time) and reloads Rules.Prometheus on change; the
	// server sets its Pool, Logger and Registerer.
	Rules alerts.RendererConfig
	// Alerting is the Alertmanager side (server/alerting.go).
	Alerting AlertingConfig
}

// Server is one rackcloud server process.
type Server struct {
	cfg      Config
	log      *slog.Logger
	pool     *pgxpool.Pool
	registry *prometheus.Registry
	api      *api.API
	tasks    *tasks.Engine
	ln       net.Listener

	mu       sync.Mutex
	dbErr    error // why the store is not ready, nil once ready
	migrated bool

	dbUp   prometheus.Gauge
	sealer *store.Sealer // nil: no key, BMC passwords are refused
	cert   tls.Certificate
	bmcs   *bmc.Manager
	watch  *bmcwatch.Watcher
	prov   *provisioner.Provisioner
	vm     *vmctl.Controller
	mon    *monitor.Monitor
	avail  *availability.Controller
	rules  *alerts.Renderer
	// background work that needs the database, started once it is ready
	// and stopped before the pool closes
	bgCtx  context.Context
	bgStop context.CancelFunc
	bg     sync.WaitGroup

	alerting alerting // server/alerting.go
}

// New validates cfg and builds the server; it does not touch the network.
// A malformed database URL is an error here, so it is reported once and
// clearly instead of being retried forever.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Server, error) {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	if log == nil {
		log = slog.Default()
	}
	pool, err := store.NewPool(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := &Server{cfg: cfg, log: log, pool: pool, registry: reg, dbErr: errors.New("database not connected yet")}
	s.dbUp = promauto.With(reg).NewGauge(prometheus.GaugeOpts{
		Name: "rackcloud_store_up", Help: "1 when the state store answered the last readiness check.",
	})
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		pool.Close()
		return nil, fmt.Errorf("TLS: give both --tls-cert-file and --tls-key-file, or neither: %w", rackcloud.ErrInvalid)
	}
	if cfg.TLSCertFile != "" {
		if s.cert, err = tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			pool.Close()
			return nil, fmt.Errorf("TLS certificate: %w", err)
		}
	}
	switch {
	case cfg.SecretKeyFile != "":
		if s.sealer, err = store.OpenSealerFile(cfg.SecretKeyFile, true); err != nil {
			pool.Close()
			return nil, err
		}
	case cfg.InsecureThrowawayKey:
		if s.sealer, err = store.NewSealer(store.NewSecretKey()); err != nil {
			pool.Close()
			return nil, err
		}
		log.Warn("--insecure-throwaway-key: BMC passwords stored now cannot be read after a restart")
	default:
		log.Warn("no --secret-key-file: this server refuses to store BMC passwords and does not poll BMCs")
	}
	var sealer api.Sealer
	if s.sealer != nil {
		sealer = s.sealer // a nil *store.Sealer must stay a nil interface
	}
	s.tasks, err = tasks.New(pool, tasks.Config{Workers: cfg.TaskWorkers, Retention: cfg.TaskRetention, Logger: log.With("component", "tasks"), Registerer: reg})
	if err != nil {
		pool.Close()
		return nil, err
	}
	// One BMC access path: the manager serves the provisioner's power
	// changes, bare-metal guests' power and the poller. Without it (a CA
	// file that does not read) the server still serves; steps that need a
	// BMC fail with bmc_unreachable and say why.
	if s.bmcs, err = s.newBMCManager(reg); err != nil {
		log.Warn("BMC access is off", "err", err)
	}
	var bmcs provisioner.BMC
	var guestPower vmctl.HostPower
	var fencer availability.BMC
	if s.bmcs != nil {
		m := &provisioner.ManagedBMC{Pool: pool, Sealer: s.sealer, Manager: s.bmcs}
		bmcs, guestPower, fencer = m, m, m
	}
	hostDial := nsnet.Dialer(cfg.HostNetns, &net.Dialer{Timeout: 10 * time.Second})
	drivers := cfg.GuestDrivers
	if drivers == nil {
		drivers = vmctl.DefaultDrivers()
		drivers[rackcloud.GuestBareMetal] = &vmctl.BareMetal{Power: guestPower}
	}
	s.vm = vmctl.New(vmctl.Config{Pool: pool, Sealer: s.sealer, Drivers: drivers, Dial: vmctl.DialFunc(hostDial),
		Reconcile: cfg.GuestReconcile, Logger: log.With("component", "vmctl"), Registerer: reg})
	if err := s.vm.Register(s.tasks); err != nil {
		pool.Close()
		return nil, err
	}
	ac := cfg.Availability
	ac.Pool, ac.BMC, ac.Reach, ac.Logger, ac.Registerer = pool, fencer, s.vm, log.With("component", "availability"), reg
	if s.avail, err = availability.New(ac); err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.avail.Register(s.tasks); err != nil {
		pool.Close()
		return nil, err
	}
	if rc := cfg.Rules; rc.Dir != "" {
		rc.Pool, rc.Logger, rc.Registerer = pool, log.With("component", "alerts"), reg
		if s.rules, err = alerts.NewRenderer(rc); err != nil {
			pool.Close()
			return nil, err
		}
	}
	if err := s.setupAlerting(); err != nil {
		pool.Close()
		return nil, err
	}
	s.api = api.New(api.Deps{Pool: pool, Logger: log, Registerer: reg, Tasks: s.tasks, Sealer: sealer, Placer: s.vm, Consoles: s.vm,
		Alerts: s.activeAlerts()})
	mc := cfg.Monitor
	mc.Pool, mc.Registerer, mc.Problem, mc.Logger = pool, reg, s.api.WriteProblem, log.With("component", "monitor")
	mc.Drivers, mc.Target = drivers, (&vmctl.Targets{Pool: pool, Sealer: s.sealer, Dial: vmctl.DialFunc(hostDial)}).For
	if s.mon, err = monitor.New(mc); err != nil {
		pool.Close()
		return nil, err
	}
	// Every replica registers every kind, also one without workers, so
	// that Submit never refuses a real kind.
	s.prov = provisioner.New(provisioner.Config{Pool: pool, BMC: bmcs, InspectTimeout: cfg.InspectTimeout, Overhead: cfg.HostOverhead,
		InstallTimeout: cfg.InstallTimeout, FirstBootTimeout: cfg.FirstBootTimeout, RoleTimeout: cfg.RoleTimeout, Sealer: s.sealer, BootURL: cfg.HostBootURL,
		Dial:   hostDial,
		Logger: log.With("component", "provisioner"), Registerer: reg})
	if err := s.prov.Register(s.tasks); err != nil {
		pool.Close()
		return nil, err
	}
	if cfg.BMCPollInterval >= 0 && s.sealer != nil && s.bmcs != nil {
		if s.watch, err = bmcwatch.New(bmcwatch.Config{Pool: s.pool, Sealer: s.sealer, Manager: s.bmcs, Interval: cfg.BMCPollInterval,
			Logger: s.log.With("component", "bmcwatch"), Registerer: reg}); err != nil {
			log.Warn("BMC polling is off", "err", err)
		}
	}
	return s, nil
}

func (s *Server) newBMCManager(reg prometheus.Registerer) (*bmc.Manager, error) {
	var roots *x509.CertPool
	if s.cfg.BMCCAFile != "" {
		pem, err := os.ReadFile(s.cfg.BMCCAFile)
		if err != nil {
			return nil, fmt.Errorf("BMC CA file: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("BMC CA file %s: no PEM certificate", s.cfg.BMCCAFile)
		}
	}
	return bmc.New(bmc.Config{RootCAs: roots, Logger: s.log.With("component", "bmc"), Registerer: reg})
}

// API is the server's REST API, for packages that add operations to it
// with api.Register before Run.
func (s *Server) API() *api.API { return s.api }

// Tasks is the server's task engine: register the task kinds on it before
// Run (the engine starts once the database is ready).
func (s *Server) Tasks() *tasks.Engine { return s.tasks }

// Sealer seals and opens the secrets stored at rest (BMC passwords); nil
// when the server has no key.
func (s *Server) Sealer() *store.Sealer { return s.sealer }

// Registry is the server's metrics registry, for packages embedded in it.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// Pool is the state store's pool.
func (s *Server) Pool() *pgxpool.Pool { return s.pool }

// Addr is the address the server listens on, once Run has started.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Listen binds the HTTP address; Run calls it when needed. Tests call it
// first to learn the port.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", s.cfg.Listen, err)
	}
	if s.cfg.TLSCertFile != "" {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{s.cert}, MinVersion: tls.VersionTLS12})
	} else if !isLoopback(ln.Addr()) {
		s.log.Warn("listening without TLS on an address other than loopback: tokens and BMC passwords cross the network in clear (use --tls-cert-file and --tls-key-file)",
			"addr", ln.Addr().String())
	}
	s.ln = ln
	return nil
}

// TLS reports whether the server serves HTTPS.
func (s *Server) TLS() bool { return s.cfg.TLSCertFile != "" }

// isLoopback reports whether addr is a loopback address (not the
// unspecified address, which listens on every interface).
func isLoopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		// Other methods than GET (and HEAD) get a 405 problem document.
		mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", "GET, HEAD")
			s.api.WriteProblem(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" is not allowed on "+p+"; allowed: GET, HEAD")
		})
	}
	mux.Handle(monitor.SDPath, s.mon.Handler())
	mux.Handle("/", s.api.Handler())
	return mux
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	s.mu.Lock()
	err, migrated := s.dbErr, s.migrated
	s.mu.Unlock()
	if migrated {
		if perr := s.pool.Ping(ctx); perr != nil {
			err = fmt.Errorf("database: %w", perr)
		}
	}
	body := map[string]any{"ready": err == nil}
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		s.dbUp.Set(0)
		body["database"] = err.Error()
		w.WriteHeader(http.StatusServiceUnavailable)
	} else {
		s.dbUp.Set(1)
		body["database"] = "ok"
	}
	_ = json.NewEncoder(w).Encode(body)
}

// Run serves until ctx ends, then shuts down gracefully. The database is
// connected and migrated in the background with exponential backoff; until
// then /readyz answers 503 with the reason and the API's queries fail.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second,
		// Failed TLS handshakes and the like are the client's problem.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	s.log.Info("rackcloud server listening", "addr", s.Addr())

	s.bgCtx, s.bgStop = context.WithCancel(context.WithoutCancel(ctx))
	dbCtx, stopDB := context.WithCancel(ctx)
	dbDone := make(chan struct{})
	go func() { defer close(dbDone); s.connect(dbCtx) }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	stopDB()
	<-dbDone
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	if terr := s.tasks.Stop(sctx); terr != nil && err == nil {
		err = terr
	}
	s.bgStop()
	s.bg.Wait()
	if s.bmcs != nil {
		s.bmcs.Close(sctx)
	}
	s.pool.Close()
	s.log.Info("rackcloud server stopped")
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// connect migrates the database, retrying with capped exponential backoff
// and jitter until it succeeds or ctx ends.
func (s *Server) connect(ctx context.Context) {
	backoff := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		applied, err := store.Migrate(ctx, s.pool)
		if err == nil {
			err = s.bootstrap(ctx)
		}
		if err == nil {
			// The engine outlives dbCtx: Run stops it after the HTTP server.
			err = s.tasks.Start(context.WithoutCancel(ctx))
		}
		if err == nil {
			s.mu.Lock()
			s.dbErr, s.migrated = nil, true
			s.mu.Unlock()
			s.log.Info("state store ready", "migrations_applied", len(applied))
			s.startAlerting()
			if s.watch != nil {
				s.bg.Add(1)
				go func() {
					defer s.bg.Done()
					_ = s.watch.Run(s.bgCtx)
				}()
			}
			// Every replica keeps a placement snapshot; one at a time
			// reconciles guests with their hosts.
			s.bg.Add(1)
			go func() {
				defer s.bg.Done()
				_ = s.vm.Run(s.bgCtx)
			}()
			if s.rules != nil {
				// One replica at a time renders the alert rules.
				s.bg.Add(1)
				go func() {
					defer s.bg.Done()
					s.rules.Run(s.bgCtx)
				}()
			}
			// One replica at a time sweeps the fenced hosts.
			s.bg.Add(1)
			go func() {
				defer s.bg.Done()
				s.avail.Run(s.bgCtx)
			}()
			if s.cfg.TaskWorkers >= 0 {
				// Racked and inspected, a host is given its role by the
				// enroll rules, and provisioned, with no hand work.
				s.bg.Add(1)
				go func() {
					defer s.bg.Done()
					_ = s.prov.RunAutoEnroll(s.bgCtx, 0)
				}()
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.dbErr = fmt.Errorf("database unavailable (attempt %d): %w", attempt, err)
		s.mu.Unlock()
		wait := backoff + rand.N(backoff/2)
		s.log.Warn("state store not ready, retrying", "attempt", attempt, "retry_in", wait.Round(time.Millisecond), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, s.cfg.RetryMax)
	}
}

// bootstrap writes a new admin token to Config.BootstrapTokenFile when the
// file does not exist yet.
func (s *Server) bootstrap(ctx context.Context) error {
	if s.cfg.BootstrapTokenFile == "" {
		return nil
	}
	if _, err := os.Stat(s.cfg.BootstrapTokenFile); err == nil {
		return nil
	}
	bootstrap := func(name string) (secret string, err error) {
		err = store.InTx(ctx, s.pool, func(tx pgx.Tx) error {
			_, secret, err = store.Bootstrap(ctx, tx, store.BootstrapOptions{Force: true, TokenName: name})
			return err
		})
		return secret, err
	}
	secret, err := bootstrap("bootstrap-file")
	if errors.Is(err, rackcloud.ErrConflict) {
		// A token of that name exists but its file is gone: make another.
		secret, err = bootstrap("")
	}
	if err != nil {
		return fmt.Errorf("bootstrap token: %w", err)
	}
	if err := os.WriteFile(s.cfg.BootstrapTokenFile, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("bootstrap token: %w", err)
	}
	s.log.Info("wrote a new admin token", "file", s.cfg.BootstrapTokenFile)
	return nil
}
