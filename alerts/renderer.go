package alerts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/rackcloud/rackcloud/store"
)

// Renderer defaults.
const (
	// DefaultRenderInterval is how often the leader renders the rules.
	DefaultRenderInterval = 10 * time.Second
	// DefaultRuleFile is the rule file's name in the rules directory.
	DefaultRuleFile = "rackcloud.yml"
)

// rendererLock is the rule renderer's advisory lock ("rcrules1").
const rendererLock int64 = 0x7263_7275_6c65_7331

// RendererConfig configures a Renderer.
type RendererConfig struct {
	Pool *pgxpool.Pool
	// Dir is the directory Prometheus loads rule files from (its
	// rule_files holds Dir/*.yml); File is the file's name there
	// (DefaultRuleFile when empty).
	Dir, File string
	// Prometheus are the base URLs of the Prometheus servers to reload
	// (started with --web.enable-lifecycle) after a change.
	Prometheus []string
	// Interval is how often the rules are rendered (DefaultRenderInterval).
	Interval time.Duration
	// HTTP reloads Prometheus (a client with a 10 s timeout when nil).
	HTTP       *http.Client
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Renderer writes the shipped rules and the API's into a rule file that
// Prometheus loads, and reloads Prometheus when the file changed. One
// replica at a time renders (a Postgres advisory lock): Run stands by on
// the others.
type Renderer struct {
	cfg          RendererConfig
	log          *slog.Logger
	renders      *prometheus.CounterVec
	reloads      *prometheus.CounterVec
	leader       prometheus.Gauge
	reloadNeeded bool
}

// NewRenderer checks cfg and registers the renderer's metrics.
func NewRenderer(cfg RendererConfig) (*Renderer, error) {
	if cfg.Pool == nil || cfg.Dir == "" {
		return nil, errors.New("alerts: the renderer needs a pool and a rules directory")
	}
	if cfg.File == "" {
		cfg.File = DefaultRuleFile
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultRenderInterval
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &Renderer{cfg: cfg, log: cfg.Logger,
		renders: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rackcloud_alert_rules_renders_total",
			Help: "Renders of the alert rule file by result: written (it changed), unchanged, error."}, []string{"result"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rackcloud_alert_rules_reloads_total",
			Help: "Prometheus reloads after a rule file change, by result (ok, error)."}, []string{"result"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rackcloud_alert_rules_leader",
			Help: "1 while this replica renders the alert rules."}),
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{r.renders, r.reloads, r.leader} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("alerts: metrics: %w", err)
			}
		}
	}
	return r, nil
}

// ReloadsOK counts the successful reloads so far.
func (r *Renderer) ReloadsOK() float64 {
	var m dto.Metric
	if err := r.reloads.WithLabelValues("ok").Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

// Path is the rule file's path.
func (r *Renderer) Path() string { return filepath.Join(r.cfg.Dir, r.cfg.File) }

// Run renders while this replica holds the renderer's lock, until ctx
// ends.
func (r *Renderer) Run(ctx context.Context) {
	store.RunAsLeader(ctx, r.cfg.Pool, rendererLock, r.cfg.Interval, r.lead,
		func(err error) { r.log.Warn("alerts: not rendering rules", "err", err) })
}

func (r *Renderer) lead(ctx context.Context) error {
	r.leader.Set(1)
	defer r.leader.Set(0)
	r.log.Info("alerts: this replica renders the alert rules", "file", r.Path())
	tick := time.NewTicker(r.cfg.Interval)
	defer tick.Stop()
	for {
		if _, err := r.Render(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("alerts: render rules", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Render writes the rule file when what it would hold changed, then
// reloads every Prometheus (again on the next call when a reload failed).
// It reports whether the file changed.
func (r *Renderer) Render(ctx context.Context) (bool, error) {
	rules, err := store.AllAlertRules(ctx, r.cfg.Pool)
	if err != nil {
		r.renders.WithLabelValues("error").Inc()
		return false, err
	}
	out, err := Render(rules)
	if err != nil {
		r.renders.WithLabelValues("error").Inc()
		return false, err
	}
	old, err := os.ReadFile(r.Path())
	changed := err != nil || !bytes.Equal(old, out)
	if changed {
		if err := os.MkdirAll(r.cfg.Dir, 0o755); err != nil {
			r.renders.WithLabelValues("error").Inc()
			return false, fmt.Errorf("rules directory: %w", err)
		}
		if err := WriteRuleFile(r.cfg.Dir, r.cfg.File, out); err != nil {
			r.renders.WithLabelValues("error").Inc()
			return false, err
		}
		r.renders.WithLabelValues("written").Inc()
		r.log.Info("alerts: rule file written", "file", r.Path(), "api_rules", len(rules))
		r.reloadNeeded = true
	} else {
		r.renders.WithLabelValues("unchanged").Inc()
	}
	if !r.reloadNeeded {
		return changed, nil
	}
	var errs []error
	for _, p := range r.cfg.Prometheus {
		if err := Reload(ctx, r.cfg.HTTP, p); err != nil {
			r.reloads.WithLabelValues("error").Inc()
			errs = append(errs, err)
			continue
		}
		r.reloads.WithLabelValues("ok").Inc()
	}
	if len(errs) == 0 {
		r.reloadNeeded = false
	}
	return changed, errors.Join(errs...)
}
