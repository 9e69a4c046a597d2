package provisioner

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/hostconfig"
	"github.com/rackcloud/rackcloud/store"
	"github.com/rackcloud/rackcloud/tasks"
)

// Defaults of the provisioning waits.
const (
	// DefaultInstallTimeout bounds the wait for the installer, from
	// power-on: boot, download, write and read back (a 300 MB image
	// under emulation takes a few minutes).
	DefaultInstallTimeout = 30 * time.Minute
	// DefaultFirstBootTimeout bounds the wait for the installed OS's
	// first heartbeat after the host was told to boot its disk.
	DefaultFirstBootTimeout = 15 * time.Minute
	// DefaultHeartbeat is how often installed hosts call in.
	DefaultHeartbeat = 10 * time.Second
	// DefaultRoleTimeout bounds the wait for an installed host's daemon
	// to answer after its first heartbeat.
	DefaultRoleTimeout = 10 * time.Minute
)

// Step names of host.provision.
const (
	StepProvisioning   = "provisioning"
	StepPrepare        = "prepare"
	StepAwaitInstall   = "await-install"
	StepBootDisk       = "boot-disk"
	StepAwaitFirstBoot = "await-first-boot"
	StepCheckRole      = "check-role"
	StepReady          = "ready"
)

// provisionKind installs an image and a role on an available host:
// available -> provisioning; the host's identity (token, TLS certificate
// from the host CA) and install plan are made; PXE and power on into the
// installer; wait for it to write and read back the image; boot the disk;
// wait for the installed OS's heartbeat; reach the role's daemon over
// mutual TLS; -> ready with its endpoint.
func (p *Provisioner) provisionKind() tasks.Kind {
	return tasks.Kind{
		Name: rackcloud.KindHostProvision,
		Validate: func(raw json.RawMessage) error {
			var pp rackcloud.HostProvisionParams
			if err := json.Unmarshal(raw, &pp); err != nil || !store.ValidID(pp.HostID) || !store.ValidID(pp.ImageID) {
				return errors.New(`want {"host_id": <uuid>, "role": "bm"|"kvm"|"docker", "image_id": <uuid>}`)
			}
			switch pp.Role {
			case rackcloud.RoleBareMetal, rackcloud.RoleKVM, rackcloud.RoleDocker:
				return nil
			}
			return fmt.Errorf("role %q: want bm, kvm or docker", pp.Role)
		},
		Steps: []tasks.Step{
			{Name: StepProvisioning, Run: p.toWorking(rackcloud.HostProvisioning, rackcloud.HostEvProvision),
				Undo: p.failHost(rackcloud.HostProvisioning, StepProvisioning)},
			{Name: StepPrepare, Run: p.prepare},
			{Name: StepPXEPowerOn, Run: p.installerBoot},
			{Name: StepAwaitInstall, Run: p.awaitInstall, WaitTimeout: p.cfg.InstallTimeout, MaxAttempts: 5},
			{Name: StepBootDisk, Run: p.bootDisk},
			{Name: StepAwaitFirstBoot, Run: p.awaitFirstBoot, WaitTimeout: p.cfg.FirstBootTimeout, MaxAttempts: 5},
			{Name: StepCheckRole, Run: p.checkRole, WaitTimeout: p.cfg.RoleTimeout, MaxAttempts: 5},
			{Name: StepReady, Run: p.toReady},
		},
	}
}

func (p *Provisioner) provisionee(ctx context.Context, sc *tasks.StepContext) (rackcloud.HostProvisionParams, rackcloud.Host, error) {
	return taskHost[rackcloud.HostProvisionParams](ctx, p, sc, func(pp rackcloud.HostProvisionParams) string { return pp.HostID })
}

// prepared is the output of the prepare step.
type prepared struct {
	Image string `json:"image"`
	Size  int64  `json:"size"`
}

// prepare records the host's role and image and makes its install plan
// (savePlan).
func (p *Provisioner) prepare(ctx context.Context, sc *tasks.StepContext) (any, error) {
	pp, h, err := p.provisionee(ctx, sc)
	if err != nil {
		return nil, err
	}
	im, err := store.GetImage(ctx, p.cfg.Pool, pp.ImageID)
	if err != nil {
		return nil, tasks.Permanent(err)
	}
	if err := p.checkPlan(h, im); err != nil {
		return nil, err
	}
	if err := store.SetHostRole(ctx, p.cfg.Pool, h.ID, pp.Role, im.ID); err != nil {
		return nil, err
	}
	return p.savePlan(ctx, sc.TaskID, h, pp.Role, im)
}

// checkPlan checks that image im can be installed on host h: the
// installer needs its size, the host a disk that holds it, and installed
// hosts the boot service's URL.
func (p *Provisioner) checkPlan(h rackcloud.Host, im rackcloud.Image) error {
	if im.Size <= 0 {
		return tasks.Permanent(fmt.Errorf("%w: image %s has no size: the installer cannot check it", rackcloud.ErrInvalid, im.Name))
	}
	if h.Inventory != nil && len(h.Inventory.Disks) > 0 {
		largest := int64(0)
		for _, d := range h.Inventory.Disks {
			largest = max(largest, d.SizeBytes)
		}
		if largest < im.Size {
			return tasks.Permanent(reasoned(rackcloud.FailDiskTooSmall,
				fmt.Errorf("image %s needs %d bytes; host %s's largest disk has %d", im.Name, im.Size, h.Name, largest)))
		}
	}
	if p.cfg.BootURL == "" {
		return tasks.Permanent(errors.New("this server has no --host-boot-url: installed hosts would not know where to call in"))
	}
	return nil
}

// savePlan makes and seals host h's install plan for task taskID: image
// im, a new host token and, for kvm and docker, a server certificate from
// the host CA. A retry makes new ones: whatever an earlier attempt handed
// out is no longer valid.
func (p *Provisioner) savePlan(ctx context.Context, taskID string, h rackcloud.Host, role rackcloud.HostRole, im rackcloud.Image) (any, error) {
	mac := ""
	if len(h.MACs) > 0 {
		mac = h.MACs[0]
	}
	cfg := hostconfig.Config{Version: 1, HostID: h.ID, Hostname: h.Name, Role: role, MAC: mac, BootURL: p.cfg.BootURL,
		Token: newToken(), HeartbeatSeconds: int(p.cfg.Heartbeat / time.Second)}
	if role == rackcloud.RoleKVM || role == rackcloud.RoleDocker {
		ca, _, err := store.HostCA(ctx, p.cfg.Pool, p.cfg.Sealer)
		if err != nil {
			return nil, tasks.Permanent(fmt.Errorf("host CA: %w", err))
		}
		pair, err := ca.Host(h.ID, h.Name, nil, time.Now())
		if err != nil {
			return nil, err
		}
		cfg.CA, cfg.Cert, cfg.Key = ca.Cert, pair.Cert, pair.Key
	}
	if err := store.SaveHostInstall(ctx, p.cfg.Pool, p.cfg.Sealer, h.ID, store.HostInstall{TaskID: taskID, ImageID: im.ID,
		Config: cfg}); err != nil {
		if errors.Is(err, store.ErrNoSealer) {
			return nil, tasks.Permanent(err)
		}
		return nil, err
	}
	return prepared{Image: im.Name, Size: im.Size}, nil
}

func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "rch_" + base64.RawURLEncoding.EncodeToString(b)
}

// DefaultFastTrackGrace is how long a fast-tracked install may take to
// start before the host is powered on into the installer after all (the
// agent that stood by is gone: powered off, or its standby ended).
const DefaultFastTrackGrace = 45 * time.Second

// skippedFastTrack marks a power-on step the fast track skipped.
const skippedFastTrack = "fast track: the inspection agent stands by for the plan"

// installerBoot powers the host on into the installer through its BMC,
// unless its inspection boot is still up with the agent standing by for a
// plan (fast track): then that boot installs, with no second boot.
func (p *Provisioner) installerBoot(ctx context.Context, sc *tasks.StepContext) (any, error) {
	pp, h, err := p.provisionee(ctx, sc)
	if err != nil {
		return nil, err
	}
	if ok, err := p.standingBy(ctx, h.ID); err != nil {
		return nil, err
	} else if ok {
		at, err := store.Now(ctx, p.cfg.Pool)
		if err != nil {
			return nil, err
		}
		p.log.Info("fast track: the host's inspection agent installs", "host", h.Name)
		return powered{At: at, Skipped: skippedFastTrack}, nil
	}
	return p.power(ctx, "pxe_power_on", pp.HostID, pxeBoot)
}

// standingBy reports whether the host's agent said it stands by (its
// latest inventory, within its standby time less a margin) and the host
// has not netbooted since.
func (p *Provisioner) standingBy(ctx context.Context, hostID string) (bool, error) {
	ev, err := store.LatestBootEvent(ctx, p.cfg.Pool, hostID, string(rackcloud.BootEventInventory), time.Time{})
	if errors.Is(err, rackcloud.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	inv, err := ParseInventory(ev.Data)
	if err != nil || inv.StandbySeconds <= 0 {
		return false, nil
	}
	now, err := store.Now(ctx, p.cfg.Pool)
	if err != nil {
		return false, err
	}
	if now.After(ev.ReceivedAt.Add(time.Duration(inv.StandbySeconds)*time.Second - 2*p.cfg.FastTrackGrace)) {
		return false, nil
	}
	script, err := store.LatestBootEvent(ctx, p.cfg.Pool, hostID, string(rackcloud.BootEventHTTPScript), time.Time{})
	switch {
	case errors.Is(err, rackcloud.ErrNotFound):
		return true, nil
	case err != nil:
		return false, err
	}
	return !script.At.After(ev.At), nil
}

// awaitInstall waits for the installer of the boot the task caused to
// write the image and read it back; its progress shows in what the step
// waits for.
func (p *Provisioner) awaitInstall(ctx context.Context, sc *tasks.StepContext) (any, error) {
	_, h, err := p.provisionee(ctx, sc)
	if err != nil {
		return nil, err
	}
	var pw powered
	if err := sc.Output(StepPXEPowerOn, &pw); err != nil {
		return nil, err
	}
	ev, err := store.LatestBootEvent(ctx, p.cfg.Pool, h.ID, string(rackcloud.BootEventInstall), pw.At)
	switch {
	case errors.Is(err, rackcloud.ErrNotFound) && pw.Skipped == skippedFastTrack:
		return p.fastTrackFallback(ctx, h, pw)
	case errors.Is(err, rackcloud.ErrNotFound):
		return nil, tasks.Snooze(p.cfg.Recheck, "the installer to start")
	case err != nil:
		return nil, err
	}
	var rep rackcloud.InstallReport
	if err := json.Unmarshal(ev.Data, &rep); err != nil {
		return nil, tasks.Snooze(p.cfg.Recheck, "a valid install report (the last one: "+err.Error()+")")
	}
	switch rep.Phase {
	case rackcloud.InstallWritten:
		if now, err := store.Now(ctx, p.cfg.Pool); err == nil {
			p.m.phase.WithLabelValues("install", "ok").Observe(now.Sub(pw.At).Seconds())
		}
		p.log.Info("image written", "host", h.Name, "disk", rep.Disk, "sha256", rep.SHA256, "mbps", rep.MBps, "resumes", rep.Resumes)
		return rep, nil
	case rackcloud.InstallFailed:
		reason := rep.Reason
		if !validReason(reason) {
			reason = rackcloud.FailDiskWrite
		}
		p.m.phase.WithLabelValues("install", "error").Observe(time.Since(pw.At).Seconds())
		return nil, tasks.Permanent(reasoned(reason, fmt.Errorf("installer on %s: %s", orUnknown(rep.Disk), rep.Error)))
	case rackcloud.InstallProgress:
		pct := 0.0
		if rep.Total > 0 {
			pct = 100 * float64(rep.Bytes) / float64(rep.Total)
		}
		return nil, tasks.Snooze(p.cfg.Recheck, fmt.Sprintf("the installer: %s %s %.0f%% of %d MB at %.1f MB/s",
			orUnknown(rep.Disk), bar(pct), pct, rep.Total>>20, rep.MBps))
	}
	return nil, tasks.Snooze(p.cfg.Recheck, "the installer to write "+orUnknown(rep.Disk))
}

// bar draws pct (0-100) as a 20-cell progress bar.
func bar(pct float64) string {
	n := int(min(max(pct, 0), 100) / 5)
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", 20-n) + "]"
}

// fastTrackFallback waits for a fast-tracked install to start, and past
// Config.FastTrackGrace powers the host on into the installer through its BMC
// (once: a netboot since shows it was done).
func (p *Provisioner) fastTrackFallback(ctx context.Context, h rackcloud.Host, pw powered) (any, error) {
	now, err := store.Now(ctx, p.cfg.Pool)
	if err != nil {
		return nil, err
	}
	if now.Sub(pw.At) < p.cfg.FastTrackGrace {
		return nil, tasks.Snooze(min(p.cfg.Recheck, p.cfg.FastTrackGrace), "the installer to start (fast track, in the inspection boot)")
	}
	if _, err := store.LatestBootEvent(ctx, p.cfg.Pool, h.ID, string(rackcloud.BootEventHTTPScript), pw.At); err == nil {
		return nil, tasks.Snooze(p.cfg.Recheck, "the installer to start")
	} else if !errors.Is(err, rackcloud.ErrNotFound) {
		return nil, err
	}
	p.log.Warn("fast track: no install started; powering the host on into the installer", "host", h.Name)
	if _, err := p.power(ctx, "pxe_power_on", h.ID, pxeBoot); err != nil {
		return nil, err
	}
	return nil, tasks.Snooze(p.cfg.Recheck, "the installer to start")
}

func validReason(r rackcloud.FailureReason) bool {
	for _, x := range rackcloud.FailureReasons() {
		if x == r {
			return true
		}
	}
	return false
}

func orUnknown(s string) string {
	if s == "" {
		return "the disk"
	}
	return s
}

// bootDisk sets the next boot to the disk through the BMC and cycles the
// power: the installed OS boots.
func (p *Provisioner) bootDisk(ctx context.Context, sc *tasks.StepContext) (any, error) {
	pp, h, err := p.provisionee(ctx, sc)
	if err != nil {
		return nil, err
	}
	if p.cfg.BMC == nil {
		return nil, tasks.Permanent(reasoned(rackcloud.FailBMCUnreachable, errors.New("this server has no BMC access")))
	}
	p.log.Info("host to boot its disk", "host", h.Name)
	return p.power(ctx, "boot_disk", pp.HostID, diskBoot)
}

// booted is the output of the first-boot wait: the host's address and
// boot as its agent reported them.
type booted struct {
	Addr   string `json:"addr"`
	BootID string `json:"boot_id,omitempty"`
	Kernel string `json:"kernel,omitempty"`
}

// awaitFirstBoot waits for the installed OS's first heartbeat.
func (p *Provisioner) awaitFirstBoot(ctx context.Context, sc *tasks.StepContext) (any, error) {
	_, h, err := p.provisionee(ctx, sc)
	if err != nil {
		return nil, err
	}
	var pw powered
	if err := sc.Output(StepBootDisk, &pw); err != nil {
		return nil, err
	}
	ev, err := store.LatestBootEvent(ctx, p.cfg.Pool, h.ID, string(rackcloud.BootEventHeartbeat), pw.At)
	switch {
	case errors.Is(err, rackcloud.ErrNotFound):
		return nil, tasks.Snooze(p.cfg.Recheck, "the installed OS's first heartbeat")
	case err != nil:
		return nil, err
	}
	var hb rackcloud.Heartbeat
	_ = json.Unmarshal(ev.Data, &hb)
	if now, err := store.Now(ctx, p.cfg.Pool); err == nil {
		p.m.phase.WithLabelValues("first_boot", "ok").Observe(now.Sub(pw.At).Seconds())
	}
	p.log.Info("installed host called in", "host", h.Name, "addr", ev.IP, "kernel", hb.Kernel)
	return booted{Addr: ev.IP, BootID: hb.BootID, Kernel: hb.Kernel}, nil
}

// roleRecheck is how often a role daemon that does not answer yet is
// tried again.
const roleRecheck = 3 * time.Second

// endpointed is the output of the role check.
type endpointed struct {
	Endpoint string `json:"endpoint,omitempty"`
	Answer   string `json:"answer,omitempty"`
}

// checkRole reaches the role's daemon over mutual TLS (kvm: libvirtd,
// docker: dockerd); a bare-metal host's heartbeat is enough.
func (p *Provisioner) checkRole(ctx context.Context, sc *tasks.StepContext) (any, error) {
	pp, h, err := p.provisionee(ctx, sc)
	if err != nil {
		return nil, err
	}
	var b booted
	if err := sc.Output(StepAwaitFirstBoot, &b); err != nil {
		return nil, err
	}
	if pp.Role == rackcloud.RoleBareMetal {
		return endpointed{}, nil
	}
	if net.ParseIP(b.Addr) == nil {
		return nil, tasks.Permanent(reasoned(rackcloud.FailRoleUnreachable, fmt.Errorf("the host's heartbeat came from no address (%q)", b.Addr)))
	}
	ep, answer, err := p.roles().Check(ctx, h, pp.Role, b.Addr)
	if err != nil {
		// The daemon may start after the host agent called in: wait
		// (the step's timeout says role_unreachable).
		p.log.Info("host's role does not answer yet", "host", h.Name, "role", pp.Role, "err", err)
		return nil, tasks.Snooze(roleRecheck, fmt.Sprintf("the %s daemon at %s to answer (last: %s)", pp.Role, b.Addr, oneLine(err.Error())))
	}
	var bt powered
	if err := sc.Output(StepBootDisk, &bt); err == nil {
		if now, err := store.Now(ctx, p.cfg.Pool); err == nil {
			p.m.phase.WithLabelValues("role_check", "ok").Observe(now.Sub(bt.At).Seconds())
		}
	}
	p.log.Info("host's role answers", "host", h.Name, "role", pp.Role, "endpoint", ep, "answer", answer)
	return endpointed{Endpoint: ep, Answer: answer}, nil
}

func (p *Provisioner) toReady(ctx context.Context, sc *tasks.StepContext) (any, error) {
	_, h, err := p.provisionee(ctx, sc)
	if err != nil {
		return nil, err
	}
	var e endpointed
	if err := sc.Output(StepCheckRole, &e); err != nil {
		return nil, err
	}
	if h.State == rackcloud.HostReady {
		return nil, nil
	}
	if err := store.SetHostEndpoint(ctx, p.cfg.Pool, h.ID, e.Endpoint); err != nil {
		return nil, err
	}
	if _, err := store.TransitionHost(ctx, p.cfg.Pool, h.ID, store.Transition{From: rackcloud.HostProvisioning,
		To: rackcloud.HostReady}); err != nil {
		if store.IsStaleState(err) {
			return nil, tasks.Permanent(err)
		}
		return nil, err
	}
	var st started
	if err := sc.Output(StepProvisioning, &st); err == nil {
		if now, err := store.Now(ctx, p.cfg.Pool); err == nil {
			p.m.phase.WithLabelValues("provision", "ok").Observe(now.Sub(st.At).Seconds())
		}
	}
	p.log.Info("host ready", "host", h.Name, "role", h.Role, "endpoint", strings.TrimSpace(e.Endpoint))
	return nil, nil
}
