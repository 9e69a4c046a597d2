// Package bmc drives servers' baseboard management controllers: power
// status, on, off, cycle and reset, the next boot device (PXE or disk, once
// or persistent), sensor readings (temperature, fans, power draw), the
// server's NICs and their MAC addresses (Redfish only) and the BMC's
// identity, over IPMI or Redfish (bmclib's gofish provider). IPMI goes
// through bmclib with two providers in its registry: the pure-Go RMCP+
// provider of package ipmilan first, which keeps one session per BMC
// across calls, and bmclib's ipmitool provider behind it (always cipher
// suite 3 unless configured otherwise); Config.IPMIProvider can choose
// ipmitool alone. The BMC's identity is read with ipmitool.
//
// It is gentle with BMCs, which are small, slow computers: a Manager keeps
// one state per BMC so that every caller shares it, and for each BMC it
// allows one request at a time, spaces requests with a rate limit, and
// backs off exponentially (with jitter) after errors. Every call is bounded
// by a timeout, logged with the bmclib provider that answered, and
// measured (rackcloud_bmc_requests_total{op,result} and a latency
// histogram). A BMC that does not answer is marked unhealthy
// (rackcloud_bmc_up{bmc} = 0) and never blocks calls to other BMCs. A
// Poller polls the power state of many BMCs concurrently with jitter, and
// every few polls their temperature, fan and power sensors, exported under
// prometheus-community ipmi_exporter's names (ipmi_temperature_celsius,
// ipmi_fan_speed_rpm, ipmi_power_watts{host,name}) rather than
// rackcloud_bmc_*, so that rules written for ipmi_exporter apply.
//
// Failures are typed: errors.Is(err, ErrAuth), ErrCipher, ErrUnreachable,
// ErrTimeout, ErrBadResponse, ErrPowerMismatch, ErrTLS, ErrBackoff,
// ErrBusy, ErrUnsupported, rackcloud.ErrInvalid; errors.As(err, *Error)
// gives the BMC and the operation.
//
// Credentials are Secrets: they never print, log or marshal in clear. At
// rest they are sealed by store.Sealer (one ring of keys, rotated with
// `rackcloud secrets rotate`).
package bmc

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/rackcloud/rackcloud"
)

// Defaults for Config.
const (
	// DefaultTimeout bounds one call to a BMC (an ipmitool run, or each
	// HTTP request of a Redfish call).
	DefaultTimeout = 20 * time.Second
	// DefaultCipherSuite is the IPMI v2 cipher suite: 3 is RAKP-HMAC-SHA1,
	// HMAC-SHA1-96, AES-CBC-128, which every BMC offers; without it ipmitool
	// tries suites in turn and each command takes 10 s longer.
	DefaultCipherSuite = "3"
	// DefaultRate is the steady number of requests per second sent to one
	// BMC; DefaultBurst how many may go back to back.
	DefaultRate  = 4
	DefaultBurst = 2
	// DefaultBackoffMin and DefaultBackoffMax bound the wait after
	// consecutive errors (doubling from min to max, with jitter).
	DefaultBackoffMin = time.Second
	DefaultBackoffMax = 2 * time.Minute
	// DefaultPowerPoll is the first interval between power-state reads
	// while waiting for a power change; it grows to 4x with jitter.
	DefaultPowerPoll = 500 * time.Millisecond
)

// IPMI providers (Config.IPMIProvider).
const (
	IPMINative   = "native"
	IPMIIpmitool = "ipmitool"
)

// Default ports.
const (
	DefaultIPMIPort    = 623
	DefaultRedfishPort = 443
)

// Config configures a Manager.
type Config struct {
	// Timeout bounds each call (DefaultTimeout when zero).
	Timeout time.Duration
	// CipherSuite is the IPMI cipher suite (DefaultCipherSuite when
	// empty).
	CipherSuite string
	// IpmitoolPath is the ipmitool binary ("ipmitool" from PATH when
	// empty).
	IpmitoolPath string
	// IPMIProvider chooses how IPMI BMCs are driven: IPMINative (the
	// default) puts package ipmilan's provider first in bmclib's registry,
	// with ipmitool behind it for what it cannot do; IPMIIpmitool uses
	// bmclib's ipmitool provider alone (as before ipmilan).
	IPMIProvider string
	// RootCAs verifies Redfish BMCs' certificates (system roots when nil);
	// InsecureTLS skips verification, for BMCs with self-signed
	// certificates.
	RootCAs     *x509.CertPool
	InsecureTLS bool
	// RedfishBasicAuth sends basic auth on every request instead of
	// opening a session.
	RedfishBasicAuth bool
	// Rate and Burst limit the requests to each BMC (DefaultRate and
	// DefaultBurst when zero; rate.Inf for no limit).
	Rate  rate.Limit
	Burst int
	// BackoffMin and BackoffMax bound the back-off after errors
	// (DefaultBackoffMin and DefaultBackoffMax when zero).
	BackoffMin time.Duration
	BackoffMax time.Duration
	// PowerPoll is the first interval of WaitPower (DefaultPowerPoll when
	// zero).
	PowerPoll time.Duration
	// Logger gets one record per call; discarded when nil.
	Logger *slog.Logger
	// Registerer gets the metrics; none are registered when nil.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() (Config, error) {
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.CipherSuite == "" {
		c.CipherSuite = DefaultCipherSuite
	}
	if _, err := strconv.Atoi(c.CipherSuite); err != nil {
		return c, fmt.Errorf("%w: cipher suite %q is not a number", rackcloud.ErrInvalid, c.CipherSuite)
	}
	switch c.IPMIProvider {
	case "":
		c.IPMIProvider = IPMINative
	case IPMINative, IPMIIpmitool:
	default:
		return c, fmt.Errorf("%w: IPMI provider %q (want %s or %s)", rackcloud.ErrInvalid, c.IPMIProvider, IPMINative, IPMIIpmitool)
	}
	if c.IpmitoolPath == "" {
		c.IpmitoolPath = "ipmitool"
	}
	p, err := exec.LookPath(c.IpmitoolPath)
	if err != nil {
		return c, fmt.Errorf("bmc: ipmitool not found (lab/install.sh installs it): %w", err)
	}
	c.IpmitoolPath = p
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Burst <= 0 {
		c.Burst = DefaultBurst
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = DefaultBackoffMin
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.BackoffMax < c.BackoffMin {
		c.BackoffMax = c.BackoffMin
	}
	if c.PowerPoll <= 0 {
		c.PowerPoll = DefaultPowerPoll
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Endpoint says how to reach one BMC.
type Endpoint struct {
	Protocol rackcloud.BMCProtocol
	// Address is host:port, or a host alone for the protocol's default
	// port.
	Address  string
	Username string
	Password Secret
}

// String names the endpoint without its credentials.
func (e Endpoint) String() string { return string(e.Protocol) + "://" + e.Address }

// LogValue logs the endpoint without its password.
func (e Endpoint) LogValue() slog.Value {
	return slog.GroupValue(slog.String("protocol", string(e.Protocol)), slog.String("address", e.Address), slog.String("user", e.Username))
}

// hostPort splits Address, filling in the protocol's default port.
func (e Endpoint) hostPort() (host string, port int, err error) {
	def := DefaultIPMIPort
	if e.Protocol == rackcloud.BMCRedfish {
		def = DefaultRedfishPort
	}
	h, p, err := net.SplitHostPort(e.Address)
	if err != nil {
		h, p = e.Address, strconv.Itoa(def)
	}
	if h == "" {
		return "", 0, fmt.Errorf("%w: BMC address %q has no host", rackcloud.ErrInvalid, e.Address)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n <= 0 || n > 65535 {
		return "", 0, fmt.Errorf("%w: BMC address %q has a bad port", rackcloud.ErrInvalid, e.Address)
	}
	return h, n, nil
}

func (e Endpoint) validate() error {
	switch e.Protocol {
	case rackcloud.BMCIPMI, rackcloud.BMCRedfish:
	default:
		return fmt.Errorf("%w: BMC protocol %q (want ipmi or redfish)", rackcloud.ErrInvalid, e.Protocol)
	}
	if _, _, err := e.hostPort(); err != nil {
		return err
	}
	if e.Username == "" {
		return fmt.Errorf("%w: BMC %s has no user name", rackcloud.ErrInvalid, e)
	}
	return nil
}

// PowerAction is a change of power.
type PowerAction string

// Power actions.
const (
	// PowerOn powers the machine on; nothing happens if it is on.
	PowerOn PowerAction = "on"
	// PowerOff cuts power at once; nothing happens if it is off.
	PowerOff PowerAction = "off"
	// PowerSoft asks the OS to shut down (ACPI power button).
	PowerSoft PowerAction = "soft"
	// PowerCycle powers off then on; a machine that is off is powered on.
	PowerCycle PowerAction = "cycle"
	// PowerReset is a hard reset of a running machine.
	PowerReset PowerAction = "reset"
)

func (a PowerAction) validate() error {
	switch a {
	case PowerOn, PowerOff, PowerSoft, PowerCycle, PowerReset:
		return nil
	}
	return fmt.Errorf("%w: power action %q", rackcloud.ErrInvalid, a)
}

// BootDevice is the device the machine boots from next.
type BootDevice string

// Boot devices.
const (
	BootPXE  BootDevice = "pxe"
	BootDisk BootDevice = "disk"
)

// BootOptions qualify a boot device.
type BootOptions struct {
	// Persistent keeps the device for every boot; otherwise it is used once.
	Persistent bool
	// EFI asks for a UEFI boot (IPMI efiboot, Redfish mode UEFI).
	EFI bool
}

// SensorKind is what a sensor measures.
type SensorKind string

// Sensor kinds.
const (
	SensorTemperature SensorKind = "temperature" // degrees Celsius
	SensorFan         SensorKind = "fan"         // RPM
	SensorPower       SensorKind = "power"       // watts
)

// Sensor is one reading.
type Sensor struct {
	Name  string     `json:"name"`
	Kind  SensorKind `json:"kind"`
	Value float64    `json:"value"`
	// Unit is "C", "RPM" or "W".
	Unit string `json:"unit"`
}

// NIC is one of the server's network interfaces as its BMC reports it
// (the host's NICs, not the BMC's own port).
type NIC struct {
	Name string `json:"name"`
	// MAC is in lower-case colon form (rackcloud.NormalizeMAC).
	MAC string `json:"mac"`
	// SpeedMbps is the link speed, 0 when the BMC does not say.
	SpeedMbps int  `json:"speed_mbps,omitempty"`
	Enabled   bool `json:"enabled"`
}

// Identity describes a BMC.
type Identity struct {
	Protocol     rackcloud.BMCProtocol `json:"protocol"`
	Manufacturer string                `json:"manufacturer,omitempty"`
	Model        string                `json:"model,omitempty"`
	Firmware     string                `json:"firmware,omitempty"`
	// GUID is the system GUID (IPMI) or the manager UUID (Redfish).
	GUID string `json:"guid,omitempty"`
	// ProtocolVersion is the IPMI version or the Redfish version.
	ProtocolVersion string `json:"protocol_version,omitempty"`
}

// Health is what rackcloud knows about a BMC's availability.
type Health struct {
	Healthy bool `json:"healthy"`
	// Error is the last failure while unhealthy, as one short line a
	// person can act on (Reason); the full detail is in the log.
	Error string `json:"error,omitempty"`
	// Kind is the last failure's kind (ErrTimeout, ErrAuth...), nil when
	// healthy.
	Kind                error     `json:"-"`
	ConsecutiveFailures int       `json:"consecutive_failures"`
	LastSuccess         time.Time `json:"last_success,omitzero"`
	LastAttempt         time.Time `json:"last_attempt,omitzero"`
	// BackoffUntil is when the next request may be sent after failures.
	BackoffUntil time.Time `json:"backoff_until,omitzero"`
}

// EndpointOf is the Endpoint of a host's BMC record.
func EndpointOf(b rackcloud.BMC) Endpoint {
	return Endpoint{Protocol: b.Protocol, Address: b.Address, Username: b.Username, Password: NewSecret(b.Password)}
}

// Mark records h in a host's BMC record: Healthy, and the error while
// unhealthy.
func (h Health) Mark(b *rackcloud.BMC) {
	b.Healthy = h.Healthy
	b.Error = ""
	if !h.Healthy {
		b.Error = h.Error
	}
}
