package monitor

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/vmctl"
)

// Config configures what a server exports for monitoring.
type Config struct {
	// Pool is the state store (inventory and tokens).
	Pool store.Querier
	// MaxAge is how old the inventory snapshot may get (0: DefaultMaxAge).
	MaxAge time.Duration
	// NodeExporterPort is where hosts' node exporters answer (0:
	// DefaultNodeExporterPort).
	NodeExporterPort int
	// BootServices are the boot services to discover.
	BootServices []BootService
	// Drivers are the guest drivers: those that implement
	// vmctl.StatsReader give guest stats, polled every StatsInterval (0:
	// DefaultStatsInterval) on hosts reached through Target (nil: no
	// guest stats).
	Drivers       map[rackcloud.GuestKind]vmctl.Driver
	Target        TargetFunc
	StatsInterval time.Duration
	// Problem answers errors (nil: plain text).
	Problem    ProblemFunc
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Monitor is one server's monitoring exports: the service discovery
// handler and the fleet metrics, both from one inventory snapshot.
type Monitor struct {
	Inventory *Inventory
	SD        *SD
	Fleet     *Fleet
	HostInfo  *HostInfo
	// Guests is nil without Config.Target.
	Guests *GuestStats
}

// New builds the exports and registers the fleet, host info and guest
// stats collectors on cfg.Registerer (when set).
func New(cfg Config) (*Monitor, error) {
	inv := NewInventory(StoreLoader(cfg.Pool), cfg.MaxAge, cfg.Logger)
	m := &Monitor{Inventory: inv, Fleet: NewFleet(inv), HostInfo: NewHostInfo(inv),
		SD: NewSD(SDConfig{Inventory: inv, Auth: StoreAuth(cfg.Pool), NodeExporterPort: cfg.NodeExporterPort,
			BootServices: cfg.BootServices, Problem: cfg.Problem, Logger: cfg.Logger})}
	if cfg.Pool != nil {
		m.HostInfo.Heartbeats = func(ctx context.Context) (map[string]time.Time, error) { return store.Heartbeats(ctx, cfg.Pool) }
	}
	collectors := []prometheus.Collector{m.Fleet, m.HostInfo}
	if cfg.Target != nil {
		readers := map[rackcloud.HostRole]vmctl.StatsReader{}
		for kind, d := range cfg.Drivers {
			if r, ok := d.(vmctl.StatsReader); ok {
				readers[rackcloud.HostRoleFor(kind)] = r
			}
		}
		m.Guests = NewGuestStats(GuestStatsConfig{Inventory: inv, Readers: readers, Target: cfg.Target,
			Interval: cfg.StatsInterval, Logger: cfg.Logger})
		collectors = append(collectors, m.Guests)
	}
	if cfg.Registerer != nil {
		for _, c := range collectors {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// SDPath is where the server mounts SD: /v1/sd/{hosts,bmcs,guests,boot}.
const SDPath = "/v1/sd/"

// Handler serves SD under SDPath.
func (m *Monitor) Handler() http.Handler { return m.SD }
