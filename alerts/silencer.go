package alerts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/rackcloud/rackcloud/store"
)

// silencerLock is the advisory lock of the replica that keeps the
// maintenance silences ("rcamsil1").
const silencerLock int64 = 0x7263_616d_7369_6c31

// DefaultSilencerInterval is how often the silencer compares the hosts in
// maintenance with Alertmanager's silences, besides on host changes.
const DefaultSilencerInterval = 30 * time.Second

// silencePlan is what to change in Alertmanager: silences to post (a new
// one when ID is empty, else a renewal of that silence) and silences to
// expire, by ID.
type silencePlan struct {
	post   []silencePost
	expire []string
}

type silencePost struct{ ID, Host, Reason string }

// planSilences decides, without I/O, how to make rackcloud's silences
// (have) one per host of want (host name -> reason), each with more than
// half of d left at now: keep a silence that has, renew one that has not,
// create one where there is none, expire duplicates and the silences of
// hosts not in want.
func planSilences(want map[string]string, have []Silence, now time.Time, d time.Duration) silencePlan {
	var p silencePlan
	byHost := map[string][]Silence{}
	for _, s := range have {
		byHost[s.Host] = append(byHost[s.Host], s)
	}
	hosts := make([]string, 0, len(want)+len(byHost))
	for h := range want {
		hosts = append(hosts, h)
	}
	for h := range byHost {
		if _, ok := want[h]; !ok {
			hosts = append(hosts, h)
		}
	}
	sort.Strings(hosts)
	for _, h := range hosts {
		ss := byHost[h]
		// The one lasting longest is kept; the rest expire.
		sort.SliceStable(ss, func(i, j int) bool { return ss[i].EndsAt.After(ss[j].EndsAt) })
		reason, wanted := want[h]
		if !wanted {
			for _, s := range ss {
				p.expire = append(p.expire, s.ID)
			}
			continue
		}
		switch {
		case len(ss) == 0:
			p.post = append(p.post, silencePost{Host: h, Reason: reason})
		case ss[0].EndsAt.Sub(now) <= d/2:
			p.post = append(p.post, silencePost{ID: ss[0].ID, Host: h, Reason: reason})
		}
		for _, s := range ss[min(1, len(ss)):] {
			p.expire = append(p.expire, s.ID)
		}
	}
	return p
}

// apply carries out p; it goes on after a failure and returns them all.
func (a *AM) apply(ctx context.Context, p silencePlan) error {
	var errs []error
	for _, s := range p.post {
		if _, err := a.postSilence(ctx, s.ID, s.Host, s.Reason); err != nil {
			errs = append(errs, err)
		}
	}
	for _, id := range p.expire {
		if err := a.expire(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("expire silence %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// SilencerConfig configures a Silencer.
type SilencerConfig struct {
	Pool *pgxpool.Pool
	AM   *AM
	// Interval between full comparisons (DefaultSilencerInterval when
	// zero); host changes (LISTEN on store.PlacementChannel) trigger one
	// at once.
	Interval time.Duration
	Logger   *slog.Logger
	// Registerer takes the silencer's metrics (none when nil).
	Registerer prometheus.Registerer
}

// Silencer keeps one rackcloud silence (matcher host="<name>") in
// Alertmanager for every host in state maintenance, and none for other
// hosts, so that work on a host does not page anyone. Among replicas, the
// one holding an advisory lock does it.
type Silencer struct {
	cfg SilencerConfig
	log *slog.Logger

	leader   prometheus.Gauge
	silences prometheus.Gauge
	syncs    *prometheus.CounterVec
	changes  *prometheus.CounterVec
}

// NewSilencer returns a Silencer; Run starts it.
func NewSilencer(cfg SilencerConfig) (*Silencer, error) {
	if cfg.Pool == nil || cfg.AM == nil {
		return nil, errors.New("silencer: Pool and AM are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultSilencerInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	return &Silencer{cfg: cfg, log: cfg.Logger,
		leader: f.NewGauge(prometheus.GaugeOpts{Name: "rackcloud_alerts_silencer_leader",
			Help: "1 while this replica keeps the maintenance silences."}),
		silences: f.NewGauge(prometheus.GaugeOpts{Name: "rackcloud_alerts_maintenance_silences",
			Help: "Hosts in maintenance whose alerts the silencer silences, as of its last successful sync."}),
		syncs: f.NewCounterVec(prometheus.CounterOpts{Name: "rackcloud_alerts_silencer_syncs_total",
			Help: "Comparisons of the hosts in maintenance with Alertmanager's silences, by result: ok or error."}, []string{"result"}),
		changes: f.NewCounterVec(prometheus.CounterOpts{Name: "rackcloud_alerts_silence_changes_total",
			Help: "Silence changes the silencer attempted, by action: post (create or renew) or expire."}, []string{"action"}),
	}, nil
}

// Sync makes rackcloud's silences equal to the hosts in maintenance once.
func (s *Silencer) Sync(ctx context.Context) error {
	err := s.sync(ctx)
	result := "ok"
	if err != nil {
		result = "error"
	}
	s.syncs.WithLabelValues(result).Inc()
	return err
}

func (s *Silencer) sync(ctx context.Context) error {
	hosts, err := store.ListMaintenanceHosts(ctx, s.cfg.Pool)
	if err != nil {
		return fmt.Errorf("silencer: hosts in maintenance: %w", err)
	}
	want := make(map[string]string, len(hosts))
	for _, h := range hosts {
		want[h.Name] = h.Reason
	}
	have, err := s.cfg.AM.Silences(ctx)
	if err != nil {
		return fmt.Errorf("silencer: %w", err)
	}
	p := planSilences(want, have, s.cfg.AM.now(), s.cfg.AM.duration())
	if len(p.post)+len(p.expire) > 0 {
		s.log.Info("silencer: updating maintenance silences", "post", len(p.post), "expire", len(p.expire))
	}
	s.changes.WithLabelValues("post").Add(float64(len(p.post)))
	s.changes.WithLabelValues("expire").Add(float64(len(p.expire)))
	if err := s.cfg.AM.apply(ctx, p); err != nil {
		return fmt.Errorf("silencer: %w", err)
	}
	s.silences.Set(float64(len(want)))
	return nil
}

// Run syncs while this replica holds the lock and stands by otherwise,
// until ctx ends; it returns nil then.
func (s *Silencer) Run(ctx context.Context) error {
	store.RunAsLeader(ctx, s.cfg.Pool, silencerLock, s.cfg.Interval, s.lead,
		func(err error) { s.log.Warn("silencer: not leading", "err", err) })
	return nil
}

func (s *Silencer) lead(ctx context.Context) error {
	s.leader.Set(1)
	defer s.leader.Set(0)
	changes := make(chan struct{}, 1)
	go s.listen(ctx, changes)
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		if err := s.Sync(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("silencer: sync", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-changes:
		}
	}
}

// listen signals changes on every host change notified on
// store.PlacementChannel, and once each time it starts listening (for
// what changed before); when its connection is lost it listens again
// after Interval (the ticker covers the gap).
func (s *Silencer) listen(ctx context.Context, changes chan<- struct{}) {
	signal := func() {
		select {
		case changes <- struct{}{}:
		default:
		}
	}
	for ctx.Err() == nil {
		l, err := store.Listen(ctx, s.cfg.Pool, store.PlacementChannel)
		if err == nil {
			signal()
			for {
				if _, err = l.Next(ctx); err != nil {
					break
				}
				signal()
			}
			l.Close()
		}
		if ctx.Err() == nil {
			s.log.Warn("silencer: listen for host changes", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(s.cfg.Interval):
		}
	}
}
