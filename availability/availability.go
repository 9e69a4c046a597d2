// Package availability is rackcloud's availability controller: it turns
// an alert that a host in service is down into a fence and an
// evacuation, so that the host's guests with HA policy restart run again
// elsewhere.
//
// Alertmanager's webhook (api: POST /v1/availability/webhook) submits a
// host.fence task per host-down alert; the task is durable, so any
// replica resumes it after a crash, and at most one runs per host (the
// task engine's one active task per target is the lock). Its steps:
//
//   - confirm: the host is in service (ready, draining, maintenance); its
//     agent's heartbeat is stale (or it has no agent); and its BMC says
//     off, or its daemon does not answer. Anything else ends the task
//     without acting (a false alarm costs nothing).
//   - fence: power off through the BMC and read it back until the BMC
//     reports off. A BMC that cannot be reached fails the task after
//     three tries: the host may still run its guests, so nothing restarts
//     them, and rackcloud_availability_unfenced{host} says so (the
//     HostUnfenced alert).
//   - fail: the host becomes failed with reason fenced (nothing is placed
//     on it any more).
//   - evacuate: a fenced host.evacuate is submitted (its own task, target
//     host/<id>/evacuate): guests with HA policy restart are re-placed and
//     recreated from their images.
//
// The controller's leader (one replica, by advisory lock) sweeps the
// fenced hosts: a host that still holds guests to restart (no host had
// room, a try failed) gets another evacuation, up to three in all with a
// backoff, then rackcloud_availability_stranded_guests{host} says how many
// are left (the GuestsStranded alert).
//
// Nothing of a host is restarted elsewhere before the host is fenced
// (DESIGN.md section 9). Every action is audited as the controller.
package availability

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// Defaults.
const (
	// DefaultStaleAfter is how old a host agent's last heartbeat must be
	// before the host may be fenced: two heartbeats missed (agents call
	// in every 10 s).
	DefaultStaleAfter = 20 * time.Second
	// DefaultPowerWait bounds the wait for the BMC to report off.
	DefaultPowerWait = 30 * time.Second
	// DefaultSweepInterval is how often the leader looks at fenced hosts.
	DefaultSweepInterval = 10 * time.Second
	// DefaultEvacuationTries bounds the fenced evacuations of one host.
	DefaultEvacuationTries = 3
	// DefaultRetryAfter is the backoff after the first failed evacuation
	// (doubled after each).
	DefaultRetryAfter = 30 * time.Second
	// DefaultReachTimeout bounds the question to the host's daemon.
	DefaultReachTimeout = 5 * time.Second
)

// Actor is who the controller's audit events name.
const Actor = "availability-controller"

// lockKey is the sweeping leader's advisory lock ("rcavail1").
const lockKey int64 = 0x7263_6176_6169_6c31

// BMC is the power control the controller needs (provisioner.ManagedBMC).
type BMC interface {
	PowerState(ctx context.Context, hostID string) (rackcloud.PowerState, error)
	SetPower(ctx context.Context, hostID string, a bmc.PowerAction) error
}

// Reacher asks a host's daemon whether it answers (vmctl.Controller).
type Reacher interface {
	Reach(ctx context.Context, h rackcloud.Host) error
}

// Config configures a Controller.
type Config struct {
	Pool *pgxpool.Pool
	// BMC powers hosts off; nil fences nothing (every fence fails).
	BMC BMC
	// Reach asks hosts' daemons; nil counts a daemon as not answering.
	Reach Reacher
	// StaleAfter, PowerWait, SweepInterval, EvacuationTries, RetryAfter
	// and ReachTimeout: 0 takes the Default*.
	StaleAfter, PowerWait, SweepInterval, RetryAfter, ReachTimeout time.Duration
	EvacuationTries                                                int
	Logger                                                         *slog.Logger
	Registerer                                                     prometheus.Registerer
}

// Controller fences dead hosts and restarts their guests elsewhere.
type Controller struct {
	cfg    Config
	log    *slog.Logger
	engine *tasks.Engine
	m      metrics
}

type metrics struct {
	fences   *prometheus.CounterVec
	leader   prometheus.Gauge
	unfenced *prometheus.GaugeVec
	stranded *prometheus.GaugeVec
	sweeps   *prometheus.CounterVec
}

// New makes a Controller; Register its task kind, then Run its sweep.
func New(cfg Config) (*Controller, error) {
	if cfg.Pool == nil {
		return nil, errors.New("availability: no pool")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.StaleAfter, DefaultStaleAfter)
	def(&cfg.PowerWait, DefaultPowerWait)
	def(&cfg.SweepInterval, DefaultSweepInterval)
	def(&cfg.RetryAfter, DefaultRetryAfter)
	def(&cfg.ReachTimeout, DefaultReachTimeout)
	if cfg.EvacuationTries <= 0 {
		cfg.EvacuationTries = DefaultEvacuationTries
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &Controller{cfg: cfg, log: cfg.Logger, m: metrics{
		fences: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rackcloud_availability_fences_total",
			Help: "host.fence tasks by outcome: fenced, not_confirmed (the host answered or was not in service), failed."}, []string{"outcome"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "rackcloud_availability_leader",
			Help: "1 while this replica sweeps the fenced hosts."}),
		unfenced: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rackcloud_availability_unfenced",
			Help: "1 per host whose last fence failed and that is not fenced since: it may still run its guests, which nothing restarted (leader only)."}, []string{"host", "host_id"}),
		stranded: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "rackcloud_availability_stranded_guests",
			Help: "Guests with HA policy restart still on a fenced host after every evacuation try (leader only)."}, []string{"host", "host_id"}),
		sweeps: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "rackcloud_availability_sweeps_total",
			Help: "Sweeps of the fenced hosts by the leader, by result (ok, error)."}, []string{"result"}),
	}}
	if cfg.Registerer != nil {
		for _, col := range []prometheus.Collector{c.m.fences, c.m.leader, c.m.unfenced, c.m.stranded, c.m.sweeps} {
			if err := cfg.Registerer.Register(col); err != nil {
				return nil, fmt.Errorf("availability: metrics: %w", err)
			}
		}
	}
	return c, nil
}

// Register adds host.fence to the engine, which also submits the
// evacuations.
func (c *Controller) Register(e *tasks.Engine) error {
	c.engine = e
	return e.Register(c.fenceKind())
}

// audit writes one of the controller's audit events.
func (c *Controller) audit(ctx context.Context, action, target, outcome, detail string) {
	err := store.WriteAudit(ctx, c.cfg.Pool, store.AuditRecord{
		AuditEvent: rackcloud.AuditEvent{Actor: Actor, Action: action, Target: target, Outcome: outcome}, Detail: detail})
	if err != nil {
		c.log.Warn("availability: audit", "action", action, "target", target, "err", err)
	}
}
