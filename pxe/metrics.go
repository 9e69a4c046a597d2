package pxe

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are the boot service's Prometheus metrics (rackcloud_boot_*).
type metrics struct {
	dhcpReceived  *prometheus.CounterVec
	dhcpSent      *prometheus.CounterVec
	dhcpDropped   *prometheus.CounterVec
	dhcpLeases    prometheus.GaugeFunc
	tftpTransfers *prometheus.CounterVec
	tftpBytes     prometheus.Counter
	httpRequests  *prometheus.CounterVec
	httpBytes     *prometheus.CounterVec
	events        *prometheus.CounterVec
	lookups       *prometheus.CounterVec
	controlPlane  prometheus.GaugeFunc
	raSent        prometheus.Counter
	// callbacksRefused counts callbacks without the current boot's
	// token, by reason (missing, wrong, replayed).
	callbacksRefused *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, activeLeases func() float64, reachable func() float64) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		dhcpReceived: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rackcloud_boot_dhcp_received_total",
			Help: "DHCP packets received, by message type and client kind.",
		}, []string{"type", "client"}),
		dhcpSent: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rackcloud_boot_dhcp_sent_total",
			Help: "DHCP replies sent, by message type.",
		}, []string{"type"}),
		dhcpDropped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rackcloud_boot_dhcp_dropped_total",
			Help: "DHCP packets not answered, by reason.",
		}, []string{"reason"}),
		dhcpLeases: f.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rackcloud_boot_dhcp_leases",
			Help: "Unexpired DHCP leases.",
		}, activeLeases),
		tftpTransfers: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rackcloud_boot_tftp_transfers_total",
			Help: "TFTP read transfers, by result (done, aborted by the client, error).",
		}, []string{"result"}),
		tftpBytes: f.NewCounter(prometheus.CounterOpts{
			Name: "rackcloud_boot_tftp_sent_bytes_total",
			Help: "Bytes sent by completed TFTP transfers.",
		}),
		httpRequests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rackcloud_boot_http_requests_total",
			Help: "Boot HTTP requests, by handler and status code.",
		}, []string{"handler", "code"}),
		httpBytes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rackcloud_boot_http_sent_bytes_total",
			Help: "Bytes of boot HTTP response bodies, by handler.",
		}, []string{"handler"}),
		events: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rackcloud_boot_events_total",
			Help: "Boot events recorded, by kind.",
		}, []string{"kind"}),
		lookups: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rackcloud_boot_profile_lookups_total",
			Help: "Boot profile lookups, by result (known, cached, unknown, error).",
		}, []string{"result"}),
		controlPlane: f.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rackcloud_boot_control_plane_up",
			Help: "1 when the control plane answered the last profile lookup, else 0.",
		}, reachable),
		raSent: f.NewCounter(prometheus.CounterOpts{
			Name: "rackcloud_boot_router_advertisements_sent_total",
			Help: "IPv6 router advertisements sent on the provisioning interface.",
		}),
		callbacksRefused: f.NewCounterVec(prometheus.CounterOpts{
			Name: "rackcloud_boot_callbacks_refused_total",
			Help: "Callbacks, agent reports and heartbeats refused for their boot or host token, by reason (missing, wrong, replayed: an earlier boot's, no_host_token: the host has none).",
		}, []string{"reason"}),
	}
	for _, r := range []string{tokenMissing, tokenWrong, tokenReplayed, tokenNoHost} {
		m.callbacksRefused.WithLabelValues(r)
	}
	return m
}

// registerPool adds the DHCP pool's gauges (full DHCP mode only: in
// proxyDHCP mode another server owns the addresses):
// rackcloud_boot_dhcp_pool_addresses and rackcloud_boot_dhcp_pool_used.
func registerPool(reg prometheus.Registerer, l *leases) {
	f := promauto.With(reg)
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rackcloud_boot_dhcp_pool_addresses",
		Help: "Addresses of the dynamic DHCP range that can be handed out (the range less excluded and reserved addresses).",
	}, func() float64 { size, _ := l.pool(); return float64(size) })
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "rackcloud_boot_dhcp_pool_used",
		Help: "Addresses of the dynamic DHCP range taken by an unexpired lease or a pending offer.",
	}, func() float64 { _, used := l.pool(); return float64(used) })
}

// Reasons a boot event is rejected for good (label values of
// rackcloud_boot_events_rejected_total).
const (
	rejectInvalid     = "invalid"      // 400, 422: the API finds it malformed
	rejectTooLarge    = "too_large"    // 413
	rejectRefused     = "refused"      // any other 4xx
	rejectServerError = "server_error" // 5xx, again and again, for it alone
)

// clientMetrics are APIClient's metrics (rackcloud_boot_events_*).
type clientMetrics struct {
	eventsRejected *prometheus.CounterVec
}

func newClientMetrics(reg prometheus.Registerer) *clientMetrics {
	m := &clientMetrics{
		eventsRejected: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "rackcloud_boot_events_rejected_total",
			Help: "Boot events dropped because the API refused them alone, by reason (invalid, too_large, refused, server_error).",
		}, []string{"reason"}),
	}
	for _, r := range []string{rejectInvalid, rejectTooLarge, rejectRefused, rejectServerError} {
		m.eventsRejected.WithLabelValues(r)
	}
	return m
}
