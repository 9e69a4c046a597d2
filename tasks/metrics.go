package tasks

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's rackcloud_tasks_* metrics.
type metrics struct {
	submitted    *prometheus.CounterVec
	started      *prometheus.CounterVec
	finished     *prometheus.CounterVec
	retries      *prometheus.CounterVec
	stepDuration *prometheus.HistogramVec
	pickup       prometheus.Histogram
	queue        *prometheus.GaugeVec
	running      prometheus.Gauge
	leasesLost   prometheus.Counter
	pruned       prometheus.Counter
	woken        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		submitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rackcloud_tasks_submitted_total",
			Help: "Tasks submitted through this engine (including spawned children), by kind.",
		}, []string{"kind"}),
		started: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rackcloud_tasks_started_total",
			Help: "Tasks claimed for the first time by this engine, by kind.",
		}, []string{"kind"}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rackcloud_tasks_finished_total",
			Help: "Tasks that ended on this engine, by kind and final state (succeeded, failed, canceled).",
		}, []string{"kind", "state"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rackcloud_tasks_step_retries_total",
			Help: "Failed step attempts that were scheduled for another attempt, by kind and step.",
		}, []string{"kind", "step"}),
		stepDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rackcloud_tasks_step_duration_seconds",
			Help:    "Duration of step attempts, by kind, step, phase (run or undo) and outcome (succeeded, failed, snoozed).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"kind", "step", "phase", "outcome"}),
		pickup: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "rackcloud_tasks_pickup_latency_seconds",
			Help:    "Time from a task becoming ready (submitted, retry due, children done) to a worker claiming it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		queue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rackcloud_tasks_queue_depth",
			Help: "Active tasks in the database by status: ready (claimable now), scheduled (retry later), snoozed (a step waiting for the machine), running (leased), waiting (for children).",
		}, []string{"status"}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rackcloud_tasks_running",
			Help: "Tasks this engine is running now.",
		}),
		leasesLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rackcloud_tasks_leases_lost_total",
			Help: "Tasks this engine abandoned because their lease was lost.",
		}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rackcloud_tasks_pruned_total",
			Help: "Ended tasks (with their sub-tasks, steps and events) this engine deleted after the retention period.",
		}),
		woken: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rackcloud_tasks_woken_total",
			Help: "Snoozing tasks made runnable early by Wake calls of this engine (in a caller's transaction, counted even if it rolled back).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.submitted, m.started, m.finished, m.retries, m.stepDuration, m.pickup, m.queue, m.running, m.leasesLost, m.pruned, m.woken} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// timeoutsCollector exports rackcloud_tasks_step_wait_timeout_seconds
// {kind,step}: each registered step's WaitTimeout (steps without one are
// left out), so that an alert can compare how long a resource has been
// in a step (rackcloud_host_step_age_seconds) with the step's bound.
type timeoutsCollector struct {
	e    *Engine
	desc *prometheus.Desc
}

func newTimeoutsCollector(e *Engine) *timeoutsCollector {
	return &timeoutsCollector{e: e, desc: prometheus.NewDesc("rackcloud_tasks_step_wait_timeout_seconds",
		"How long a step of a registered task kind may wait for the machine before it fails (steps with a bound only).",
		[]string{"kind", "step"}, nil)}
}

func (c *timeoutsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *timeoutsCollector) Collect(ch chan<- prometheus.Metric) {
	c.e.mu.RLock()
	defer c.e.mu.RUnlock()
	for _, name := range c.e.names {
		for _, s := range c.e.kinds[name].Steps {
			if s.WaitTimeout > 0 {
				ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, s.WaitTimeout.Seconds(), name, s.Name)
			}
		}
	}
}
