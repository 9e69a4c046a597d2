package bmc

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics of the bmc subsystem.
type metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	up        *prometheus.GaugeVec
	unhealthy prometheus.Gauge
	polls     *prometheus.CounterVec
	// The poller's sensor readings, named as prometheus-community's
	// ipmi_exporter names them, by host (the poll's ID) and sensor name.
	temperature *prometheus.GaugeVec
	fan         *prometheus.GaugeVec
	power       *prometheus.GaugeVec
}

// sensorGauge is the gauge of a sensor kind, nil for others.
func (m *metrics) sensorGauge(k SensorKind) *prometheus.GaugeVec {
	switch k {
	case SensorTemperature:
		return m.temperature
	case SensorFan:
		return m.fan
	case SensorPower:
		return m.power
	}
	return nil
}

func newMetrics(r prometheus.Registerer) *metrics {
	f := promauto.With(r) // a nil Registerer registers nothing
	return &metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rackcloud_bmc_requests_total",
			Help: "Calls to BMCs by operation and result (ok, timeout, unreachable, auth, cipher, tls, bad_response, power_mismatch, unsupported, backoff, busy, closed, canceled, error).",
		}, []string{"op", "result"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rackcloud_bmc_request_duration_seconds",
			Help:    "Latency of calls to BMCs by operation, waiting for the BMC's turn included.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 40},
		}, []string{"op"}),
		up: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "rackcloud_bmc_up",
			Help: "1 while the BMC answers, 0 after it failed (unreachable, timeout, refused credentials...).",
		}, []string{"bmc"}),
		unhealthy: f.NewGauge(prometheus.GaugeOpts{
			Name: "rackcloud_bmc_unhealthy",
			Help: "Number of known BMCs whose last call failed.",
		}),
		polls: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rackcloud_bmc_polls_total",
			Help: "Power-state polls by the poller, by result.",
		}, []string{"result"}),
		temperature: sensorVec(f, "ipmi_temperature_celsius", "Temperature sensor readings of the hosts' BMCs, in degrees Celsius."),
		fan:         sensorVec(f, "ipmi_fan_speed_rpm", "Fan speed sensor readings of the hosts' BMCs, in rotations per minute."),
		power:       sensorVec(f, "ipmi_power_watts", "Power sensor readings of the hosts' BMCs, in watts."),
	}
}

// sensorVec is one kind of the poller's sensor readings, by host and
// sensor name.
func sensorVec(f promauto.Factory, name, help string) *prometheus.GaugeVec {
	return f.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help + " Read by the poller."}, []string{"host", "name"})
}
