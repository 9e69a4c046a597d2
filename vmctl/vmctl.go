package vmctl

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// Defaults of Config.
const (
	// DefaultStopGrace is how long a guest may take to stop gently.
	DefaultStopGrace = 30 * time.Second
	// DefaultReconcile is how often the reconciler looks at every host.
	DefaultReconcile = 30 * time.Second
	// DefaultClaimTries bounds the claims one placement tries before the
	// step gives up for this attempt (each lost race excludes that host).
	DefaultClaimTries = 8
)

// Config configures a Controller.
type Config struct {
	Pool *pgxpool.Pool
	// Sealer opens the host CA's and adopted hosts' client keys.
	Sealer *store.Sealer
	// Drivers run guests by kind; a kind without one fails its tasks.
	Drivers map[rackcloud.GuestKind]Driver
	// Dial opens connections to hosts' daemons (nil: net.Dialer); the
	// lab dials inside the provisioning network's namespace.
	Dial DialFunc
	// HTTP fetches images from their URLs (nil: http.DefaultClient).
	HTTP *http.Client
	// StopGrace bounds a gentle stop (0: DefaultStopGrace).
	StopGrace time.Duration
	// Reload is how often the snapshot is reloaded whole (0: DefaultReload).
	Reload time.Duration
	// Reconcile is how often the reconciler runs (0: DefaultReconcile;
	// negative: never).
	Reconcile time.Duration
	// ClaimTries bounds claims per placement (0: DefaultClaimTries).
	ClaimTries int
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Controller places guests and runs their tasks.
type Controller struct {
	cfg     Config
	log     *slog.Logger
	keeper  *Keeper
	targets *Targets
	engine  *tasks.Engine
	m       metrics

	// reload serializes the full reloads a refusal asks for; loaded is
	// when the last one began, so refusals decided before it share it.
	reload sync.Mutex
	loaded time.Time
}

type metrics struct {
	decisions *prometheus.CounterVec
	refusals  *prometheus.CounterVec
	conflicts prometheus.Counter
	decide    prometheus.Histogram
	observed  *prometheus.CounterVec
	// crashes counts, per guest, the reconciler's observations of a guest
	// newly crashed (GuestCrashLooping); a guest's series goes with it.
	crashes *prometheus.CounterVec
}

// New builds a controller; Register adds its task kinds to an engine and
// Run keeps its snapshot and reconciler.
func New(cfg Config) *Controller {
	cfg.StopGrace = cmp.Or(cfg.StopGrace, DefaultStopGrace)
	cfg.Reconcile = cmp.Or(cfg.Reconcile, DefaultReconcile)
	cfg.ClaimTries = cmp.Or(cfg.ClaimTries, DefaultClaimTries)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	f := promauto.With(cfg.Registerer)
	return &Controller{cfg: cfg, log: cfg.Logger, keeper: NewKeeper(cfg.Pool, cfg.Reload, cfg.Logger),
		targets: &Targets{Pool: cfg.Pool, Sealer: cfg.Sealer, Dial: cfg.Dial},
		m: metrics{
			decisions: f.NewCounterVec(prometheus.CounterOpts{Name: "rackcloud_placement_decisions_total",
				Help: "Placement decisions, by result (placed, refused, conflict)."}, []string{"result"}),
			refusals: f.NewCounterVec(prometheus.CounterOpts{Name: "rackcloud_placement_refusals_total",
				Help: "Placements refused, by the filter that removed the last candidates."}, []string{"filter"}),
			conflicts: f.NewCounter(prometheus.CounterOpts{Name: "rackcloud_placement_conflicts_total",
				Help: "Claims the database refused because another replica claimed first (the next candidate is tried)."}),
			decide: f.NewHistogram(prometheus.HistogramOpts{Name: "rackcloud_placement_decision_duration_seconds",
				Help:    "How long one in-memory placement decision took.",
				Buckets: []float64{1e-6, 5e-6, 2e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.02}}),
			observed: f.NewCounterVec(prometheus.CounterOpts{Name: "rackcloud_guest_observed_changes_total",
				Help: "Changes of guests' observed states seen by the reconciler, by new state."}, []string{"state"}),
			crashes: f.NewCounterVec(prometheus.CounterOpts{Name: "rackcloud_guest_crashes_total",
				Help: "Times the reconciler saw a guest newly crashed (not running though it should), by guest (series of guests that crashed only)."},
				[]string{"guest_id", "guest", "project_id"}),
		}}
}

// Register adds the controller's task kinds to e.
func (c *Controller) Register(e *tasks.Engine) error {
	c.engine = e
	for _, k := range c.Kinds() {
		if err := e.Register(k); err != nil {
			return err
		}
	}
	return nil
}

// Run keeps the placement snapshot and runs the reconciler until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.keeper.Run(ctx)
	}()
	if c.cfg.Reconcile > 0 {
		c.reconcileLoop(ctx)
	}
	<-done
	return nil
}

// Keeper is the controller's placement snapshot.
func (c *Controller) Keeper() *Keeper { return c.keeper }

// DryRun answers where guest g would go, claiming nothing.
func (c *Controller) DryRun(ctx context.Context, g rackcloud.Guest) (Decision, error) {
	r, err := c.request(ctx, g)
	if err != nil {
		return Decision{}, err
	}
	if err := c.waitReady(ctx); err != nil {
		return Decision{}, err
	}
	return c.keeper.Place(r)
}

func (c *Controller) waitReady(ctx context.Context) error {
	select {
	case <-c.keeper.Ready():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		return errors.New("the placement snapshot is not loaded yet")
	}
}

// request turns a guest into a placement request.
func (c *Controller) request(ctx context.Context, g rackcloud.Guest) (Request, error) {
	r := Request{GuestID: g.ID, Kind: g.Kind, Flavor: g.Flavor, ZoneID: g.ZoneID, RackID: g.RackID, HostID: g.WantHostID,
		Strategy: Strategy(g.Strategy)}
	for k, v := range g.Selector {
		r.Constraints = append(r.Constraints, LabelExpr{Key: k, Op: "=", Values: []string{v}})
	}
	for _, s := range g.Constraints {
		e, err := ParseLabelExpr(s)
		if err != nil {
			return r, fmt.Errorf("%w: %v", rackcloud.ErrInvalid, err)
		}
		r.Constraints = append(r.Constraints, e)
	}
	if g.PlacementGroupID != "" {
		pg, err := store.GetPlacementGroup(ctx, c.cfg.Pool, g.PlacementGroupID)
		if err != nil {
			return r, fmt.Errorf("placement group %s: %w", g.PlacementGroupID, err)
		}
		r.Group = &Group{ID: pg.ID, Policy: pg.Policy, Hard: pg.Hard, Scope: pg.Scope,
			MaxPerScope: pg.MaxPerScope, Weight: pg.Weight}
	}
	return r, nil
}

// place decides and claims for guest g, the decision's share reserved on
// the snapshot while its claim is in flight: a claim the database refuses
// (another replica was first) excludes that host and tries the next
// decision, up to ClaimTries; no fit is *NoFitError.
func (c *Controller) place(ctx context.Context, g rackcloud.Guest) (Decision, error) {
	r, err := c.request(ctx, g)
	if err != nil {
		return Decision{}, err
	}
	if err := c.waitReady(ctx); err != nil {
		return Decision{}, err
	}
	r.Exclude = map[string]bool{}
	var last error
	reloaded := false
	for range c.cfg.ClaimTries {
		start := time.Now()
		d, res, err := c.keeper.Reserve(r, g)
		c.m.decide.Observe(time.Since(start).Seconds())
		var nf *NoFitError
		if errors.As(err, &nf) && !reloaded {
			// The snapshot may not have heard of a change yet (a host
			// made ready a moment ago, its notification on the way): a
			// refusal is only final once decided on a fresh load.
			reloaded = true
			if err := c.reloadSince(ctx, start); err != nil {
				return d, err
			}
			d, res, err = c.keeper.Reserve(r, g)
		}
		if errors.As(err, &nf) {
			c.m.decisions.WithLabelValues("refused").Inc()
			c.m.refusals.WithLabelValues(nf.Explanation.LastFilter()).Inc()
			return d, err
		}
		if err != nil {
			return d, err
		}
		_, err = store.ClaimHost(ctx, c.cfg.Pool, g.ID, d.HostID, d.Explain())
		res.End(err == nil)
		if err == nil {
			c.m.decisions.WithLabelValues("placed").Inc()
			return d, nil
		}
		if !errors.Is(err, store.ErrHostFull) && !errors.Is(err, store.ErrHostUnavailable) && !errors.Is(err, store.ErrPlacementGroup) {
			return d, err
		}
		c.m.decisions.WithLabelValues("conflict").Inc()
		c.m.conflicts.Inc()
		last = err
		r.Exclude[d.HostID] = true
		if err := c.keeper.Refresh(ctx, d.HostID); err != nil {
			return d, err
		}
	}
	return Decision{}, fmt.Errorf("placement lost %d claims in a row to other replicas (last: %w); will retry", c.cfg.ClaimTries, last)
}

// reloadSince reloads the whole snapshot from the database unless a
// reload began after since (it saw everything committed before since).
// Concurrent refusals wait for one reload rather than each making its
// own.
func (c *Controller) reloadSince(ctx context.Context, since time.Time) error {
	c.reload.Lock()
	defer c.reload.Unlock()
	if c.loaded.After(since) {
		return nil
	}
	begun := time.Now()
	if err := c.keeper.Load(ctx); err != nil {
		return err
	}
	c.loaded = begun
	return nil
}

// HostName is the name of a host in the snapshot ("" when absent).
func (c *Controller) HostName(id string) string {
	if h := c.keeper.host(id); h != nil {
		return h.Name
	}
	return ""
}
