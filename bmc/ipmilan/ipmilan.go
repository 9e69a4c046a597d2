// Package ipmilan is a pure-Go IPMI v2.0 (RMCP+, "lanplus") provider for
// bmclib: power status and control, the next boot device and sensor
// readings, without running ipmitool. The wire protocol (RMCP+ session
// with RAKP 1-4, HMAC-SHA1 integrity, AES-CBC-128 confidentiality, the
// chassis, boot option, SDR and sensor commands) is github.com/bougou/go-ipmi;
// this package adds what a fleet needs on top of it:
//
//   - one session per BMC, kept across calls and opened again after a
//     failure, so that a power poll is one UDP exchange instead of a
//     process and a five-message handshake;
//   - one request at a time per BMC, and a Close that never waits past
//     its context for a request in flight;
//   - typed failures (ErrAuth, ErrCipher, ErrUnreachable, ErrBadResponse)
//     that package bmc maps to its own kinds;
//   - no panics on malformed replies: a shield under go-ipmi's socket
//     (shield.go) checks every reply's framing and, once the session is
//     up, its integrity code before go-ipmi parses it, and a panic in the
//     codec on the caller's goroutine is turned into ErrBadResponse.
//
// A Conn is registered in a bmclib client's Registry (Register) under
// ProviderName, so bmclib stays the entry point.
package ipmilan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	bmclibbmc "github.com/bmc-toolbox/bmclib/v2/bmc"
	"github.com/bmc-toolbox/bmclib/v2/providers"
	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"
	"github.com/jacobweinstock/registrar"
)

const (
	// ProviderName is the name of the provider in bmclib's registry.
	ProviderName = "ipmilan"
	// ProviderProtocol is its protocol.
	ProviderProtocol = "ipmi"
)

// Features are the bmclib features a Conn implements.
var Features = registrar.Features{
	providers.FeaturePowerState,
	providers.FeaturePowerSet,
	providers.FeatureBootDeviceSet,
}

// Kinds of failure, tested with errors.Is.
var (
	// ErrAuth: the BMC refused the user name or the password (RAKP 2
	// status "unauthorized name", or an authentication code that does
	// not match the password).
	ErrAuth = errors.New("ipmi: credentials refused")
	// ErrCipher: the BMC refused the cipher suite.
	ErrCipher = errors.New("ipmi: cipher suite refused")
	// ErrUnreachable: the BMC's address cannot be reached (no route,
	// unknown host).
	ErrUnreachable = errors.New("ipmi: BMC unreachable")
	// ErrBadResponse: the BMC answered something that makes no sense.
	ErrBadResponse = errors.New("ipmi: bad response")
	// ErrClosed: the Conn was closed.
	ErrClosed = errors.New("ipmi: connection closed")
)

// Defaults for Config.
const (
	// DefaultAttemptTimeout is how long one request waits for its answer
	// before it is sent again (ipmitool's lanplus default is 1 s).
	DefaultAttemptTimeout = time.Second
	// DefaultRetries is how many times a request is sent again.
	DefaultRetries = 3
	// DefaultCloseTimeout bounds the Close Session request.
	DefaultCloseTimeout = time.Second
)

// Config says how to reach one BMC.
type Config struct {
	Host     string
	Port     int
	Username string
	Password string
	// CipherSuite is the RMCP+ cipher suite (3 when zero).
	CipherSuite int
	// AttemptTimeout and Retries: DefaultAttemptTimeout and
	// DefaultRetries when zero.
	AttemptTimeout time.Duration
	Retries        int
}

// Conn is one BMC's session. It is safe for concurrent use: requests take
// turns.
type Conn struct {
	cfg Config
	sem chan struct{} // the turn: one request at a time

	mu      sync.Mutex // guards the fields below
	cl      *client.Client
	sensors []*types.Sensor // the SDR repository's sensors, read once per session
	closed  bool
}

var (
	_ bmclibbmc.Opener           = (*Conn)(nil)
	_ bmclibbmc.Closer           = (*Conn)(nil)
	_ bmclibbmc.PowerStateGetter = (*Conn)(nil)
	_ bmclibbmc.PowerSetter      = (*Conn)(nil)
	_ bmclibbmc.BootDeviceSetter = (*Conn)(nil)
	_ bmclibbmc.Provider         = (*Conn)(nil)
)

// New returns a Conn that opens its session on first use.
func New(cfg Config) (*Conn, error) {
	if cfg.CipherSuite == 0 {
		cfg.CipherSuite = 3
	}
	if _, _, _, ok := types.GetCipherSuiteAlgorithms(types.CipherSuiteID(cfg.CipherSuite)); !ok {
		return nil, fmt.Errorf("%w: cipher suite %d is not implemented", ErrCipher, cfg.CipherSuite)
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = DefaultAttemptTimeout
	}
	if cfg.Retries <= 0 {
		cfg.Retries = DefaultRetries
	}
	return &Conn{cfg: cfg, sem: make(chan struct{}, 1)}, nil
}

// Register adds c to a bmclib registry under ProviderName.
func Register(r *registrar.Registry, c *Conn) {
	r.Register(ProviderName, ProviderProtocol, Features, nil, c)
}

// Name is the provider's name, for bmclib's metadata.
func (c *Conn) Name() string { return ProviderName }

// Open opens the session (checking the credentials) if it is not open.
func (c *Conn) Open(ctx context.Context) error {
	return c.do(ctx, true, func(context.Context, *client.Client) error { return nil })
}

// Close closes the session (Close Session, bounded by ctx and
// DefaultCloseTimeout) and the socket. A request in flight is let finish;
// the session is closed after it. Safe to call twice.
func (c *Conn) Close(ctx context.Context) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	select {
	case c.sem <- struct{}{}:
		defer func() { <-c.sem }()
		c.drop(ctx)
	default:
		// A request is in flight: it closes the session when it ends
		// (see do).
	}
	return nil
}

// drop closes the session, if any. The caller holds the turn.
func (c *Conn) drop(ctx context.Context) {
	c.mu.Lock()
	cl := c.cl
	c.cl, c.sensors = nil, nil
	c.mu.Unlock()
	if cl == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultCloseTimeout)
	defer cancel()
	_ = cl.Close(ctx)
}

// do runs fn on the session, opening it first if needed. A failure on a
// session that was already open closes it, and, when retry is set (fn is
// a read or idempotent), fn runs once more on a new session: the BMC may
// have dropped the old one (timeout, restart).
func (c *Conn) do(ctx context.Context, retry bool, fn func(context.Context, *client.Client) error) (err error) {
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	defer func() {
		c.mu.Lock()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			c.drop(ctx)
		}
		<-c.sem
	}()
	defer func() {
		if r := recover(); r != nil {
			c.drop(ctx)
			err = fmt.Errorf("%w: %v", ErrBadResponse, r)
		}
	}()
	for attempt := 0; ; attempt++ {
		c.mu.Lock()
		closed, cl := c.closed, c.cl
		c.mu.Unlock()
		if closed {
			return ErrClosed
		}
		reused := cl != nil
		if cl == nil {
			if cl, err = c.connect(ctx); err != nil {
				return err
			}
			c.mu.Lock()
			c.cl = cl
			c.mu.Unlock()
		}
		err = fn(ctx, cl)
		if err == nil {
			return nil
		}
		if answered(err) {
			return classify(err) // the session is fine: the BMC said no
		}
		c.drop(ctx)
		if !reused || !retry || attempt > 0 || ctx.Err() != nil {
			return classify(err)
		}
	}
}

// connect opens a session. A BMC whose port is closed (ICMP port
// unreachable) is asked again until ctx ends, as ipmitool does: a
// restarting BMC closes its port for a while.
func (c *Conn) connect(ctx context.Context) (*client.Client, error) {
	for {
		cl, err := client.NewClient(c.cfg.Host, c.cfg.Port, c.cfg.Username, c.cfg.Password)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrAuth, err) // the user name is too long
		}
		cl.WithTimeout(c.cfg.AttemptTimeout).WithRetry(c.cfg.Retries).
			WithCipherSuiteID(types.CipherSuiteID(c.cfg.CipherSuite)).
			WithMaxPrivilegeLevel(types.PrivilegeLevelAdministrator).
			WithUDPProxy(shieldDialer{user: c.cfg.Username, password: c.cfg.Password})
		err = connectSafe(ctx, cl)
		if err == nil {
			return cl, nil
		}
		// Close only the socket: no session to close, so a context that
		// is already done skips the Close Session request.
		dead, cancel := context.WithCancel(context.Background())
		cancel()
		_ = cl.Close(dead)
		if !errors.Is(err, syscall.ECONNREFUSED) || ctx.Err() != nil {
			return nil, classify(err)
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (the BMC's port is closed)", context.Cause(ctx))
		case <-t.C:
		}
	}
}

// connectSafe is cl.Connect with a panic in the codec turned into
// ErrBadResponse.
func connectSafe(ctx context.Context, cl *client.Client) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrBadResponse, r)
		}
	}()
	return cl.Connect(ctx)
}

// answered reports whether err is the BMC's answer to a request (a
// completion code), which leaves the session usable.
func answered(err error) bool {
	var re *types.ResponseError
	return errors.As(err, &re)
}

// classify wraps err with its kind, if it has one.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrAuth) || errors.Is(err, ErrCipher) || errors.Is(err, ErrUnreachable) ||
		errors.Is(err, ErrBadResponse) || errors.Is(err, ErrClosed) {
		return err
	}
	if k := kindOf(err); k != nil {
		return fmt.Errorf("%w: %w", k, err)
	}
	return err
}

// rmcpStatus finds go-ipmi's text for an RMCP+ status code.
var rmcpStatus = regexp.MustCompile(`rmcp\+ status 0x([0-9a-f]{1,2})`)

// kindOf sorts a go-ipmi failure. It is pure.
func kindOf(err error) error {
	// go-ipmi joins the failures of its handshake with %v, so the status
	// and the RAKP mismatch are found in the text as well as in the chain.
	s := strings.ToLower(err.Error())
	code, hasCode := -1, false
	var se *types.RmcpStatusError
	if errors.As(err, &se) {
		code, hasCode = int(se.StatusCode()), true
	} else if m := rmcpStatus.FindStringSubmatch(s); m != nil {
		if v, perr := strconv.ParseUint(m[1], 16, 8); perr == nil {
			code, hasCode = int(v), true
		}
	}
	if hasCode {
		switch types.RmcpStatusCode(code) {
		case types.RmcpStatusCodeUnauthorizedName, types.RmcpStatusCodeInvalidNameLength,
			types.RmcpStatusCodeUnauthorizedRoleOfPriLevel, types.RmcpStatusCodeInvalidRole,
			types.RmcpStatusCodeUnauthorizedGUID, types.RmcpStatusCodeInvalidIntegrityCheckValue:
			return ErrAuth
		case types.RmcpStatusCodeInvalidAuthAlg, types.RmcpStatusCodeInvalidIntegrityAlg,
			types.RmcpStatusCodeInvalidConfidentAlg, types.RmcpStatusCodeNoCipherSuiteMatch,
			types.RmcpStatusCodeNoMatchingAuthPayload, types.RmcpStatusCodeNoMatchingIntegrityPayload:
			return ErrCipher
		}
		return nil
	}
	if errors.Is(err, client.ErrRAKPAuthentication) || strings.Contains(s, strings.ToLower(client.ErrRAKPAuthentication.Error())) {
		return ErrAuth
	}
	if strings.Contains(s, "open session failed") && strings.Contains(s, "too short") {
		// A BMC that refuses the proposed algorithms may answer the Open
		// Session Request with only the tag and the status (ipmi_sim
		// does), which go-ipmi cannot unpack: the refusal is the suite's.
		return ErrCipher
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return nil // the caller's deadline: package bmc decides
	}
	if errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH) {
		return ErrUnreachable
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		return ErrUnreachable
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	if errors.Is(err, types.ErrUnpackedDataTooShort) {
		return ErrBadResponse
	}
	if strings.Contains(s, "unpack") || strings.Contains(s, "too short") || strings.Contains(s, "not enough data") ||
		strings.Contains(s, "invalid rmcp") || strings.Contains(s, "not an invalid rmcp") {
		return ErrBadResponse
	}
	return nil
}

// PowerStateGet reads the chassis power: "on" or "off".
func (c *Conn) PowerStateGet(ctx context.Context) (string, error) {
	var on bool
	err := c.do(ctx, true, func(ctx context.Context, cl *client.Client) error {
		var err error
		on, err = powerOn(ctx, cl)
		return err
	})
	if err != nil {
		return "", err
	}
	if on {
		return "on", nil
	}
	return "off", nil
}

func powerOn(ctx context.Context, cl *client.Client) (bool, error) {
	res, err := cl.GetChassisStatus(ctx)
	if err != nil {
		return false, err
	}
	if res == nil {
		return false, fmt.Errorf("%w: empty chassis status", ErrBadResponse)
	}
	return res.PowerIsOn, nil
}

// powerControls maps bmclib's power states to Chassis Control; check:
// nothing is sent when the power already is want.
var powerControls = map[string]struct {
	ctl         chassis.ChassisControl
	want, check bool
}{
	"on":    {chassis.ChassisControlPowerUp, true, true},
	"off":   {chassis.ChassisControlPowerDown, false, true},
	"soft":  {chassis.ChassisControlSoftShutdown, false, true},
	"cycle": {ctl: chassis.ChassisControlPowerCycle},
	"reset": {ctl: chassis.ChassisControlHardReset},
}

// PowerSet changes the power: on, off and soft do nothing when the machine
// already is so (as bmclib's ipmitool provider); cycle and reset are sent
// as they are, and never sent twice.
func (c *Conn) PowerSet(ctx context.Context, state string) (bool, error) {
	pc, ok := powerControls[strings.ToLower(state)]
	if !ok {
		return false, fmt.Errorf("power state %q unknown", state)
	}
	err := c.do(ctx, pc.check, func(ctx context.Context, cl *client.Client) error {
		if pc.check {
			on, err := powerOn(ctx, cl)
			if err != nil {
				return err
			}
			if on == pc.want {
				return nil
			}
		}
		_, err := cl.ChassisControl(ctx, pc.ctl)
		return err
	})
	return err == nil, err
}

// BootDeviceSet sets the next boot device ("pxe", "disk", "cdrom", "bios",
// "none"), once or persistent, legacy or EFI (Set System Boot Options,
// parameter 5).
func (c *Conn) BootDeviceSet(ctx context.Context, device string, persistent, efi bool) (bool, error) {
	p, err := bootFlags(device, persistent, efi)
	if err != nil {
		return false, err
	}
	err = c.do(ctx, true, func(ctx context.Context, cl *client.Client) error {
		return cl.SetSystemBootOptionsParamFor(ctx, p)
	})
	return err == nil, err
}

// bootDevices maps bmclib's boot devices to boot device selectors.
var bootDevices = map[string]types.BootDeviceSelector{
	"pxe":   types.BootDeviceSelectorForcePXE,
	"disk":  types.BootDeviceSelectorForceHardDrive,
	"cdrom": types.BootDeviceSelectorForceCDROM,
	"bios":  types.BootDeviceSelectorForceBIOSSetup,
	"none":  types.BootDeviceSelectorNoOverride,
}

// bootFlags is the boot flags parameter for a device. It is pure.
func bootFlags(device string, persistent, efi bool) (*types.BootOptionParam_BootFlags, error) {
	sel, ok := bootDevices[strings.ToLower(device)]
	if !ok {
		return nil, fmt.Errorf("boot device %q unknown", device)
	}
	bootType := types.BIOSBootTypeLegacy
	if efi {
		bootType = types.BIOSBootTypeEFI
	}
	return &types.BootOptionParam_BootFlags{BootFlagsValid: true, Persist: persistent, BIOSBootType: bootType, BootDeviceSelector: sel}, nil
}
