package monitor

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rackcloud/rackcloud/store"
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
}

// New builds the exports and registers the fleet collector on
// cfg.Registerer (when set).
func New(cfg Config) (*Monitor, error) {
	inv := NewInventory(StoreLoader(cfg.Pool), cfg.MaxAge, cfg.Logger)
	m := &Monitor{Inventory: inv, Fleet: NewFleet(inv),
		SD: NewSD(SDConfig{Inventory: inv, Auth: StoreAuth(cfg.Pool), NodeExporterPort: cfg.NodeExporterPort,
			BootServices: cfg.BootServices, Problem: cfg.Problem, Logger: cfg.Logger})}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(m.Fleet); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// SDPath is where the server mounts SD: /v1/sd/{hosts,bmcs,guests,boot}.
const SDPath = "/v1/sd/"

// Handler serves SD under SDPath.
func (m *Monitor) Handler() http.Handler { return m.SD }
