// Package server is the rackcloud server process: it opens the state store
// (retrying with backoff while the database is down), applies migrations,
// and serves the API, /healthz, /readyz and /metrics until its context ends,
// then shuts down gracefully. cmd/rackcloud binds its flags; tests drive it
// in-process.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rackcloud/rackcloud/api"
	"github.com/rackcloud/rackcloud/store"
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
}

// Server is one rackcloud server process.
type Server struct {
	cfg      Config
	log      *slog.Logger
	pool     *pgxpool.Pool
	registry *prometheus.Registry
	api      *api.API
	ln       net.Listener

	mu       sync.Mutex
	dbErr    error // why the store is not ready, nil once ready
	migrated bool

	dbUp prometheus.Gauge
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
	s.api = api.New(api.Deps{Pool: pool, Logger: log, Registerer: reg})
	return s, nil
}

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
	s.ln = ln
	return nil
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
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	s.log.Info("rackcloud server listening", "addr", s.Addr())

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
			s.mu.Lock()
			s.dbErr, s.migrated = nil, true
			s.mu.Unlock()
			s.log.Info("state store ready", "migrations_applied", len(applied))
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
