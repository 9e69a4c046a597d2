package vmctl

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"time"

	"github.com/rackcloud/rackcloud"
)

// DialFunc opens a plain connection (a net.Dialer's DialContext, or one
// that dials inside the provisioning network's namespace: nsnet.Dialer).
// Drivers add TLS on top when Target.TLS is set.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Target is the host a driver works on and how to reach its daemon.
type Target struct {
	HostID string
	Role   rackcloud.HostRole
	// Endpoint is the daemon's address: for dockerd unix:///PATH or
	// tcp://ADDR:PORT (TLS), for libvirtd qemu+unix:///system?socket=PATH
	// or qemu+tls://ADDR:PORT/system.
	Endpoint string
	// TLS is the client side of mutual TLS for tcp and tls endpoints
	// (ServerName set); nil for unix endpoints.
	TLS *tls.Config
	// Dial opens the plain connection; nil means a net.Dialer.
	Dial DialFunc
}

// Spec is the guest a driver makes, named after Spec.GuestID so that a step
// run again finds what it already made.
type Spec struct {
	GuestID   string
	Name      string
	ProjectID string
	Kind      rackcloud.GuestKind
	Flavor    rackcloud.Resources
	Labels    map[string]string
	Image     Image
}

// Image is the guest's image and how to read its bytes from rackcloud's
// image store.
type Image struct {
	ID       string
	Name     string
	Format   rackcloud.ImageFormat
	Checksum string // sha256:<hex> of the bytes Open returns
	// Size is the image's size in bytes as stored (0 when unknown).
	Size int64
	// Open reads the image's bytes as stored (Format), checked against
	// Checksum: the reader's Read returns an error at the end when they
	// do not match, so a consumer that streams must drop what it made on
	// any error. Open may be called more than once.
	Open func(ctx context.Context) (io.ReadCloser, error)
}

// Observed is what a driver sees of a guest.
type Observed struct {
	State ObservedState `json:"state"`
	// Detail is a line for people: "exited with code 137", "crashed".
	Detail string `json:"detail,omitempty"`
	// Handle is the driver's ID for the guest (domain UUID, container ID).
	Handle string `json:"handle,omitempty"`
}

// ObservedState is a guest's state as its driver sees it.
type ObservedState string

// Observed states.
const (
	ObservedRunning ObservedState = "running"
	// ObservedStopped: made and not running, stopped on purpose.
	ObservedStopped ObservedState = "stopped"
	// ObservedCrashed: not running, and it was not asked to stop (a
	// crashed domain, a container that exited on its own).
	ObservedCrashed ObservedState = "crashed"
	ObservedPaused  ObservedState = "paused"
	// ObservedMissing: the host has no such guest.
	ObservedMissing ObservedState = "missing"
)

// Driver makes and runs guests of one kind on hosts of one role. Every
// method is idempotent: it may run again after a crash and reaches the
// same effect once (Create finds the guest it made before; Delete of a
// missing guest is nil). Errors are wrapped with what was being done and
// on which host; a guest the host does not have is rackcloud.ErrNotFound
// for Start, Stop and Reboot.
type Driver interface {
	// Prepare puts what the guest needs on the host before it is made:
	// the image (uploaded or loaded once per host and reused) and, for
	// VMs, the guest's own disk over it. It is the guest's disk step.
	Prepare(ctx context.Context, t Target, s Spec) error
	// Create makes the guest on the host without starting it and
	// returns its handle.
	Create(ctx context.Context, t Target, s Spec) (handle string, err error)
	// Start starts a made guest; a running one is left alone.
	Start(ctx context.Context, t Target, s Spec) error
	// Stop stops the guest, gently for up to grace, then forcibly; a
	// stopped one is left alone.
	Stop(ctx context.Context, t Target, s Spec, grace time.Duration) error
	// Reboot restarts a running guest.
	Reboot(ctx context.Context, t Target, s Spec) error
	// Delete removes the guest and its own disk (not the shared image);
	// it stops it first if it runs.
	Delete(ctx context.Context, t Target, s Spec) error
	// Observe says what the host has of the guest.
	Observe(ctx context.Context, t Target, s Spec) (Observed, error)
}

// Capacity is what a host's daemon says the host has, read when a running
// host is adopted.
type Capacity struct {
	Resources rackcloud.Resources
	// Daemon is a line for people: "libvirt 9.0.0, QEMU 7.2.0, domain type qemu".
	Daemon string
}

// Prober reads a host's capacity through its daemon (adopting a host).
type Prober interface {
	Probe(ctx context.Context, t Target) (Capacity, error)
}

// Lister lists the guests rackcloud made on a host (the reconciler asks
// once per host rather than once per guest): their observed states keyed
// by guest ID.
type Lister interface {
	List(ctx context.Context, t Target) (map[string]Observed, error)
}

// DiskMover moves a VM's own disk between hosts (cold migration): Export
// reads the stopped guest's disk from its host, Import writes it as the
// guest's disk on another host in place of Prepare.
type DiskMover interface {
	ExportDisk(ctx context.Context, t Target, s Spec) (r io.ReadCloser, size int64, err error)
	ImportDisk(ctx context.Context, t Target, s Spec, r io.Reader, size int64) error
}
