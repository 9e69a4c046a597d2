package provisioner

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// Defaults of Config.
const (
	// DefaultInspectTimeout bounds the wait for the agent's inventory once
	// the host was powered on into PXE (a UEFI server under emulation takes
	// a minute or two to get there).
	DefaultInspectTimeout = 10 * time.Minute
	// DefaultOverheadMemoryMiB is the memory a host keeps for its own
	// system (kernel, agent, libvirtd or dockerd) by default.
	DefaultOverheadMemoryMiB = 512
	// DefaultRecheck is how often a waiting step looks again without a
	// wake-up (the API wakes it when the awaited event arrives).
	DefaultRecheck = 30 * time.Second
)

// BMC is what the provisioner needs of a host's BMC. Errors wrap the bmc
// package's kinds (bmc.ErrAuth, bmc.ErrUnreachable...), which Classify
// turns into failure reasons.
type BMC interface {
	// PXEBoot sets the next boot to PXE and powers the host on (or
	// cycles it when it is on).
	PXEBoot(ctx context.Context, hostID string) error
	// PowerOff cuts the host's power.
	PowerOff(ctx context.Context, hostID string) error
	// DiskBoot sets the next boot to the disk and cycles the power (the
	// installed OS boots).
	DiskBoot(ctx context.Context, hostID string) error
	// MACs returns the MAC addresses of the host's NICs as its BMC knows
	// them (Redfish; an error wrapping bmc.ErrUnsupported for IPMI).
	MACs(ctx context.Context, hostID string) ([]string, error)
}

// BMCFuncs adapts functions to BMC (tests).
type BMCFuncs struct {
	PXEBootFunc, PowerOffFunc, DiskBootFunc func(ctx context.Context, hostID string) error
	MACsFunc                                func(ctx context.Context, hostID string) ([]string, error)
}

// MACs calls MACsFunc.
func (f BMCFuncs) MACs(ctx context.Context, id string) ([]string, error) { return f.MACsFunc(ctx, id) }

// PXEBoot calls PXEBootFunc.
func (f BMCFuncs) PXEBoot(ctx context.Context, id string) error { return f.PXEBootFunc(ctx, id) }

// DiskBoot calls DiskBootFunc.
func (f BMCFuncs) DiskBoot(ctx context.Context, id string) error { return f.DiskBootFunc(ctx, id) }

// PowerOff calls PowerOffFunc.
func (f BMCFuncs) PowerOff(ctx context.Context, id string) error { return f.PowerOffFunc(ctx, id) }

var _ BMC = BMCFuncs{}

// Config configures a Provisioner.
type Config struct {
	Pool *pgxpool.Pool
	// BMC drives hosts' BMCs; nil fails every step that needs one with
	// bmc_unreachable.
	BMC BMC
	// InspectTimeout bounds the wait for the inventory (0: default).
	InspectTimeout time.Duration
	// InstallTimeout bounds the wait for the installer, FirstBootTimeout
	// the wait for the installed OS's first heartbeat (0: defaults).
	InstallTimeout, FirstBootTimeout time.Duration
	// RoleTimeout bounds the wait for the role's daemon to answer once
	// the installed host called in (0: DefaultRoleTimeout).
	RoleTimeout time.Duration
	// Sealer seals the hosts' install secrets (tokens, TLS keys) and the
	// host CA; nil fails provisioning.
	Sealer *store.Sealer
	// BootURL is the boot service's URL as installed hosts reach it
	// (their heartbeats go to BootURL/boot/{mac}/heartbeat).
	BootURL string
	// FastTrackGrace bounds the wait for a fast-tracked install to start
	// (0: DefaultFastTrackGrace).
	FastTrackGrace time.Duration
	// Heartbeat is how often installed hosts call in (0: default).
	Heartbeat time.Duration
	// Roles reaches the role daemons of installed hosts (nil: TLSRoles
	// dialing with Dial).
	Roles RoleChecker
	// Dial opens connections to installed hosts (nil: net.Dialer).
	Dial DialFunc
	// Recheck is how often waiting steps look again without a wake-up.
	Recheck time.Duration
	// Overhead is reserved for the host itself, never sold, on a host
	// inspected with no overhead set (operators set it per host after).
	Overhead   rackcloud.Resources
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Provisioner moves hosts through their lifecycle with tasks.
type Provisioner struct {
	cfg Config
	// enrolled wakes the auto-enroll loop (a host became available).
	enrolled chan struct{}
	log      *slog.Logger
	engine   *tasks.Engine
	m        metrics
}

type metrics struct {
	phase    *prometheus.HistogramVec
	failures *prometheus.CounterVec
}

// New builds a provisioner; Register adds its task kinds to an engine.
func New(cfg Config) *Provisioner {
	cfg.InspectTimeout = cmp.Or(cfg.InspectTimeout, DefaultInspectTimeout)
	cfg.Recheck = cmp.Or(cfg.Recheck, DefaultRecheck)
	cfg.InstallTimeout = cmp.Or(cfg.InstallTimeout, DefaultInstallTimeout)
	cfg.FirstBootTimeout = cmp.Or(cfg.FirstBootTimeout, DefaultFirstBootTimeout)
	cfg.RoleTimeout = cmp.Or(cfg.RoleTimeout, DefaultRoleTimeout)
	cfg.Heartbeat = cmp.Or(cfg.Heartbeat, DefaultHeartbeat)
	cfg.FastTrackGrace = cmp.Or(cfg.FastTrackGrace, DefaultFastTrackGrace)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	f := promauto.With(cfg.Registerer)
	if cfg.Pool != nil {
		cfg.Registerer.MustRegister(newHostsCollector(cfg.Pool))
	}
	return &Provisioner{cfg: cfg, log: cfg.Logger, enrolled: make(chan struct{}, 1), m: metrics{
		phase: f.NewHistogramVec(prometheus.HistogramOpts{Name: "rackcloud_provision_phase_duration_seconds",
			Help:    "How long each phase of moving a host through its lifecycle took, by phase and result.",
			Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200}}, []string{"phase", "result"}),
		failures: f.NewCounterVec(prometheus.CounterOpts{Name: "rackcloud_provision_failures_total",
			Help: "Hosts that failed, by reason."}, []string{"reason"}),
	}}
}

// Register adds the provisioner's task kinds to e. Every replica registers
// them, also one that runs no workers, so that Submit knows every kind.
func (p *Provisioner) Register(e *tasks.Engine) error {
	p.engine = e
	for _, k := range p.Kinds() {
		if err := e.Register(k); err != nil {
			return err
		}
	}
	return nil
}

// Kinds are the task kinds the provisioner runs.
func (p *Provisioner) Kinds() []tasks.Kind {
	return []tasks.Kind{p.enrollKind(), p.deprovisionKind(), p.provisionKind(), p.drainKind(), p.activateKind(),
		p.installGuestKind()}
}

func (p *Provisioner) roles() RoleChecker {
	if p.cfg.Roles != nil {
		return p.cfg.Roles
	}
	return &TLSRoles{Pool: p.cfg.Pool, Sealer: p.cfg.Sealer, Dial: p.cfg.Dial}
}

// Step names of host.enroll.
const (
	StepInspecting     = "inspecting"
	StepLearnMACs      = "learn-macs"
	StepPXEPowerOn     = "pxe-power-on"
	StepAwaitInventory = "await-inventory"
	StepAvailable      = "available"
)

// EnrollParams are host.enroll's parameters.
type EnrollParams struct {
	rackcloud.HostTaskParams
	// Booted says the host is already running the inspection image (its
	// boot discovered it): nothing is done through its BMC.
	Booted bool `json:"booted,omitempty"`
}

// enrollKind inspects a host: discovered (or available, or failed while
// inspecting) -> inspecting; PXE and power on through the BMC unless it
// booted by itself; wait for the agent's inventory; -> available with
// its resources.
func (p *Provisioner) enrollKind() tasks.Kind {
	return tasks.Kind{
		Name: rackcloud.KindHostEnroll,
		Validate: func(raw json.RawMessage) error {
			var ep EnrollParams
			if err := json.Unmarshal(raw, &ep); err != nil || !store.ValidID(ep.HostID) {
				return errors.New("want {\"host_id\": <uuid>}")
			}
			return nil
		},
		Steps: []tasks.Step{
			{Name: StepInspecting, Run: p.toWorking(rackcloud.HostInspecting, rackcloud.HostEvInspect),
				Undo: p.failHost(rackcloud.HostInspecting, StepInspecting)},
			{Name: StepLearnMACs, Run: p.learnMACs},
			{Name: StepPXEPowerOn, Run: p.pxePowerOn},
			{Name: StepAwaitInventory, Run: p.awaitInventory, WaitTimeout: p.cfg.InspectTimeout, MaxAttempts: 5},
			{Name: StepAvailable, Run: p.toAvailable},
		},
	}
}

// started is the output of a host task's first step: when the task began
// moving the host (the database's clock), and from where.
type started struct {
	At   time.Time           `json:"at"`
	From rackcloud.HostState `json:"from"`
}

// powered is the output of the PXE power-on step: when the host was
// powered on into PXE (the database's clock), so that only reports of the
// boot it caused count; zero when the host booted by itself.
type powered struct {
	At      time.Time `json:"at,omitzero"`
	Skipped string    `json:"skipped,omitempty"`
}

// enrollee reads a host.enroll task's params and its host.
func (p *Provisioner) enrollee(ctx context.Context, sc *tasks.StepContext) (EnrollParams, rackcloud.Host, error) {
	return taskHost[EnrollParams](ctx, p, sc, func(ep EnrollParams) string { return ep.HostID })
}

// taskHost reads a host task's params and the host they name (hostID);
// a host that is gone fails the step for good.
func taskHost[P any](ctx context.Context, p *Provisioner, sc *tasks.StepContext, hostID func(P) string) (P, rackcloud.Host, error) {
	var params P
	if err := sc.Params(&params); err != nil {
		return params, rackcloud.Host{}, err
	}
	h, err := store.GetHost(ctx, p.cfg.Pool, hostID(params))
	if err != nil {
		return params, h, tasks.Permanent(err)
	}
	return params, h, nil
}

// toWorking is the first step of a host task: it moves the host into
// working (inspecting, deprovisioning) by the first of evs its state
// allows, or by a retry when it failed in working. Its output (started)
// says when and from where.
func (p *Provisioner) toWorking(working rackcloud.HostState, evs ...rackcloud.HostEvent) tasks.StepFunc {
	return func(ctx context.Context, sc *tasks.StepContext) (any, error) {
		_, h, err := p.enrollee(ctx, sc)
		if err != nil {
			return nil, err
		}
		now, err := store.Now(ctx, p.cfg.Pool)
		if err != nil {
			return nil, err
		}
		if h.State == working {
			// This step ran before and the host moved; the step is done.
			return started{At: now, From: h.State}, nil
		}
		life := rackcloud.HostLife{State: h.State}
		if h.Failure != nil {
			life.FailedIn = h.Failure.In
		}
		var tr rackcloud.HostTransition
		err = fmt.Errorf("%w: host %s is %s: it cannot become %s", rackcloud.ErrConflict, h.Name, h.State, working)
		for _, ev := range append([]rackcloud.HostEvent{rackcloud.HostEvRetry}, evs...) {
			if t, terr := rackcloud.NextHost(life, ev); terr == nil && t.To == working {
				tr, err = t, nil
				break
			}
		}
		if err != nil {
			return nil, tasks.Permanent(err)
		}
		if _, err := store.TransitionHost(ctx, p.cfg.Pool, h.ID, store.Transition{From: h.State, To: tr.To,
			Reason: string(working) + " (task " + sc.TaskID + ")"}); err != nil {
			if store.IsStaleState(err) {
				return nil, tasks.Permanent(err)
			}
			return nil, err
		}
		p.log.Info("host "+string(working), "host", h.Name, "task", sc.TaskID)
		return started{At: now, From: h.State}, nil
	}
}

// learnMACs asks the BMC of a host registered without MACs for its NICs'
// MACs, so that the boot it is about to power on is recognised as this
// host (and not discovered as another).
func (p *Provisioner) learnMACs(ctx context.Context, sc *tasks.StepContext) (any, error) {
	ep, h, err := p.enrollee(ctx, sc)
	if err != nil {
		return nil, err
	}
	if ep.Booted || len(h.MACs) > 0 {
		return map[string]any{"macs": h.MACs}, nil
	}
	if p.cfg.BMC == nil {
		return nil, tasks.Permanent(reasoned(rackcloud.FailBMCUnreachable, errors.New("this server has no BMC access")))
	}
	macs, err := p.cfg.BMC.MACs(ctx, h.ID)
	switch {
	case errors.Is(err, bmc.ErrUnsupported):
		return nil, tasks.Permanent(reasoned(rackcloud.FailNoDHCP,
			fmt.Errorf("host %s has no MAC and its BMC cannot report them: register its boot NIC's MAC: %w", h.Name, err)))
	case err != nil:
		reason := Classify(err)
		if reason == rackcloud.FailBMCRefused {
			return nil, tasks.Permanent(reasoned(reason, err))
		}
		return nil, reasoned(reason, err)
	case len(macs) == 0:
		return nil, tasks.Permanent(reasoned(rackcloud.FailNoDHCP, fmt.Errorf("host %s: its BMC reports no NIC", h.Name)))
	}
	if h, err = store.AddHostMACs(ctx, p.cfg.Pool, h.ID, macs); err != nil {
		if errors.Is(err, rackcloud.ErrConflict) {
			return nil, tasks.Permanent(reasoned(rackcloud.FailNoDHCP, err))
		}
		return nil, err
	}
	p.log.Info("host MACs learnt from its BMC", "host", h.Name, "macs", h.MACs)
	return map[string]any{"macs": h.MACs}, nil
}

func (p *Provisioner) pxePowerOn(ctx context.Context, sc *tasks.StepContext) (any, error) {
	var ep EnrollParams
	if err := sc.Params(&ep); err != nil {
		return nil, err
	}
	if ep.Booted {
		return powered{Skipped: "the host booted the inspection image by itself"}, nil
	}
	return p.power(ctx, "pxe_power_on", ep.HostID, pxeBoot)
}

// The BMC calls power makes.
var (
	pxeBoot  = BMC.PXEBoot
	diskBoot = BMC.DiskBoot
)

// power makes the host boot through its BMC (do: PXEBoot, DiskBoot) and
// says when, on the database's clock: reports of earlier boots, stored
// before that moment, do not count. A BMC that refused the credentials
// fails the step at once; one that did not answer is tried again.
func (p *Provisioner) power(ctx context.Context, phase, hostID string, do func(BMC, context.Context, string) error) (any, error) {
	if p.cfg.BMC == nil {
		return nil, tasks.Permanent(reasoned(rackcloud.FailBMCUnreachable, errors.New("this server has no BMC access")))
	}
	at, err := store.Now(ctx, p.cfg.Pool)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	err = do(p.cfg.BMC, ctx, hostID)
	p.observe(phase, start, err)
	if err != nil {
		reason := Classify(err)
		if reason == rackcloud.FailBMCRefused || errors.Is(err, rackcloud.ErrNotFound) {
			return nil, tasks.Permanent(reasoned(reason, err))
		}
		return nil, reasoned(reason, err)
	}
	return powered{At: at}, nil
}

func (p *Provisioner) awaitInventory(ctx context.Context, sc *tasks.StepContext) (any, error) {
	var ep EnrollParams
	if err := sc.Params(&ep); err != nil {
		return nil, err
	}
	var st started
	if err := sc.Output(StepInspecting, &st); err != nil {
		return nil, err
	}
	var pw powered
	if err := sc.Output(StepPXEPowerOn, &pw); err != nil {
		return nil, err
	}
	// The report of the boot this task caused; a host that booted by
	// itself reported just before its task began (the report started it).
	since := pw.At
	if since.IsZero() {
		since = st.At.Add(-time.Minute)
	}
	inv, err := p.latestReport(ctx, ep.HostID, since)
	switch {
	case errors.Is(err, rackcloud.ErrNotFound):
		return nil, tasks.Snooze(p.cfg.Recheck, "inventory from the host's agent")
	case errors.Is(err, errBadReport):
		// Keep waiting for a good one (the wait's timeout says
		// agent_timeout with this in the log).
		p.log.Warn("agent's inventory refused", "host", ep.HostID, "err", err)
		return nil, tasks.Snooze(p.cfg.Recheck, "a valid inventory (the last report: "+err.Error()+")")
	case err != nil:
		return nil, err
	}
	if now, err := store.Now(ctx, p.cfg.Pool); err == nil {
		p.m.phase.WithLabelValues("inspect", "ok").Observe(now.Sub(st.At).Seconds())
	}
	return inv, nil
}

func (p *Provisioner) toAvailable(ctx context.Context, sc *tasks.StepContext) (any, error) {
	ep, h, err := p.enrollee(ctx, sc)
	if err != nil {
		return nil, err
	}
	var inv rackcloud.Inventory
	if err := sc.Output(StepAwaitInventory, &inv); err != nil {
		return nil, err
	}
	if h.State == rackcloud.HostAvailable {
		return map[string]any{"resources": h.Resources}, nil // this step ran before
	}
	res := Resources(inv)
	overhead := h.Overhead
	if overhead == (rackcloud.Resources{}) {
		overhead = p.cfg.Overhead
	}
	if _, err := store.SetHostInventory(ctx, p.cfg.Pool, h.ID, inv, res, overhead); err != nil {
		return nil, err
	}
	if _, err := store.TransitionHost(ctx, p.cfg.Pool, h.ID, store.Transition{From: rackcloud.HostInspecting,
		To: rackcloud.HostAvailable}); err != nil {
		if store.IsStaleState(err) {
			return nil, tasks.Permanent(err)
		}
		return nil, err
	}
	// An available host waits powered off until it is provisioned.
	if h.BMC != nil && !ep.Booted && p.cfg.BMC != nil {
		if err := p.cfg.BMC.PowerOff(ctx, h.ID); err != nil {
			p.log.Warn("available host not powered off", "host", h.Name, "err", err)
		}
	}
	p.wakeAutoEnroll()
	p.log.Info("host available", "host", h.Name, "cpus", res.CPUCores, "memory_mib", res.MemoryMiB, "disk_gib", res.DiskGiB)
	return map[string]any{"resources": res}, nil
}

// failHost is the compensation of a host task's first step (named step):
// the task failed, so the host goes from working to failed with the typed
// reason of the step that failed; canceled, it goes back where the task
// found it. A host some other change moved meanwhile is left alone.
func (p *Provisioner) failHost(working rackcloud.HostState, step string) tasks.StepFunc {
	return func(ctx context.Context, sc *tasks.StepContext) (any, error) {
		var ep rackcloud.HostTaskParams
		if err := sc.Params(&ep); err != nil {
			return nil, err
		}
		info, err := p.engine.Get(ctx, sc.TaskID)
		if err != nil {
			return nil, err
		}
		if info.CancelRequested && info.FailedStep == "" {
			var st started
			if err := sc.Output(step, &st); err == nil && st.From != "" && st.From != working {
				_, err := store.TransitionHost(ctx, p.cfg.Pool, ep.HostID, store.Transition{From: working, To: st.From,
					Reason: string(working) + " canceled"})
				if err != nil && !store.IsStaleState(err) {
					return nil, err
				}
			}
			return nil, nil
		}
		reason := FailureFor(info.FailedStep, info.Error)
		detail := FailureDetail(reason, info.Error)
		h, err := store.TransitionHost(ctx, p.cfg.Pool, ep.HostID, store.Transition{From: working, To: rackcloud.HostFailed,
			Failure: &rackcloud.HostFailure{Reason: reason, Step: info.FailedStep, Detail: detail, TaskID: sc.TaskID}})
		if store.IsStaleState(err) || errors.Is(err, rackcloud.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		p.m.failures.WithLabelValues(string(reason)).Inc()
		p.log.Warn("host failed", "host", h.Name, "reason", reason, "step", info.FailedStep, "err", detail)
		return map[string]string{"reason": string(reason)}, nil
	}
}

func (p *Provisioner) observe(phase string, start time.Time, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	p.m.phase.WithLabelValues(phase, result).Observe(time.Since(start).Seconds())
}

// reasonedError carries a failure reason in its text, "reason: error", so
// that the task's recorded error still says it after the engine wrapped
// it.
type reasonedError struct {
	reason rackcloud.FailureReason
	err    error
}

func (e *reasonedError) Error() string { return string(e.reason) + ": " + e.err.Error() }
func (e *reasonedError) Unwrap() error { return e.err }

func reasoned(r rackcloud.FailureReason, err error) error { return &reasonedError{reason: r, err: err} }

// FailureFor is the typed reason of a host task that failed in step with
// the recorded error text: the reason a step put in its error, else the
// step's own (a wait that timed out), else internal.
func FailureFor(step, errText string) rackcloud.FailureReason {
	for _, r := range rackcloud.FailureReasons() {
		if strings.Contains(errText, string(r)+": ") {
			return r
		}
	}
	if strings.Contains(errText, tasks.ErrWaitTimeout.Error()) {
		switch step {
		case StepAwaitInventory, StepAwaitWipe, StepAwaitInstall:
			return rackcloud.FailAgentTimeout
		case StepAwaitFirstBoot, StepAwaitPowerOn:
			return rackcloud.FailFirstBootTimeout
		case StepCheckRole:
			return rackcloud.FailRoleUnreachable
		}
	}
	return rackcloud.FailInternal
}

// FailureDetail is the part of a failed task's error a person needs next
// to the reason: without the engine's "step X failed after N attempt(s):"
// and the reason's own prefix.
func FailureDetail(reason rackcloud.FailureReason, errText string) string {
	if _, rest, ok := strings.Cut(errText, string(reason)+": "); ok {
		return oneLine(rest)
	}
	if i := strings.Index(errText, "): "); i >= 0 && strings.HasPrefix(errText, "step ") {
		return oneLine(errText[i+3:])
	}
	return oneLine(errText)
}

// oneLine keeps the first line of s, bounded.
func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 500 {
		s = s[:500] + "…"
	}
	return s
}
