package vmctl

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/digitalocean/go-libvirt"
	"github.com/google/uuid"
	"github.com/klauspost/compress/zstd"
	"libvirt.org/go/libvirtxml"

	"github.com/rackcloud/rackcloud"
)

// Defaults of the libvirt driver.
const (
	// DefaultLibvirtPoolDir is the directory of the storage pool
	// LibvirtPool on every host. It is under /var/lib/libvirt/images
	// because Debian's and Ubuntu's AppArmor policy lets virt-aa-helper
	// read disks there only: elsewhere it cannot follow a qcow2 disk to
	// its backing image, the domain's profile lacks the image, and QEMU
	// fails to open it ("Permission denied").
	DefaultLibvirtPoolDir = "/var/lib/libvirt/images/rackcloud"
	// LibvirtPool is the storage pool that holds images and guest disks.
	LibvirtPool = "rackcloud"
	// LibvirtMetadataNS is the namespace of the domain metadata element
	// that names the guest.
	LibvirtMetadataNS     = "https://rackcloud.dev/xmlns/libvirt/guest/1"
	defaultLibvirtSocket  = "/run/libvirt/libvirt-sock"
	defaultLibvirtTLSPort = "16514"
)

// Libvirt is the VM driver: guests are libvirt domains named rc-<guest
// ID> (UUID from the guest ID), their disks qcow2 volumes rc-<guest
// ID>.qcow2 over a shared base volume img-<image ID> in the storage pool
// LibvirtPool, their serial console logged into the pool volume
// rc-<guest ID>.console (readable remotely: ConsoleLog). It keeps one
// connection per host and endpoint, reconnected when lost, and is safe
// for concurrent use.
//
// Disk moves (DiskMover) carry the guest's qcow2 overlay only: ImportDisk
// uploads the base image first (as Prepare does) and the overlay after
// it; the overlay names its base by path, so every host must use the
// same PoolDir.
type Libvirt struct {
	// PoolDir is the pool's directory on the hosts; empty means
	// DefaultLibvirtPoolDir.
	PoolDir string
	// DomainType is "kvm" or "qemu" (TCG); empty means kvm when the
	// host's domain capabilities offer it, else qemu.
	DomainType string

	mu    sync.Mutex
	conns map[connKey]*lvConn
}

var (
	_ Driver    = (*Libvirt)(nil)
	_ Prober    = (*Libvirt)(nil)
	_ Lister    = (*Libvirt)(nil)
	_ DiskMover = (*Libvirt)(nil)
)

type connKey struct{ host, endpoint string }

type lvConn struct {
	mu      sync.Mutex
	l       *libvirt.Libvirt
	domType string
}

func (d *Libvirt) poolDir() string {
	if d.PoolDir != "" {
		return d.PoolDir
	}
	return DefaultLibvirtPoolDir
}

// socketDialer adapts a function to go-libvirt's socket.Dialer.
type socketDialer func() (net.Conn, error)

func (f socketDialer) Dial() (net.Conn, error) { return f() }

// LibvirtTLSDial opens a mutual TLS connection to libvirtd at addr
// through dial (nil: a net.Dialer) and reads the byte libvirtd sends
// after the handshake once it accepted the client's certificate
// (virNetTLSSession: 1), so the RPC stream that follows starts aligned.
func LibvirtTLSDial(ctx context.Context, dial DialFunc, cfg *tls.Config, addr string) (net.Conn, error) {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, cfg)
	if dl, ok := ctx.Deadline(); ok {
		_ = tc.SetDeadline(dl)
	}
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	ok := make([]byte, 1)
	if _, err := io.ReadFull(tc, ok); err != nil || ok[0] != 1 {
		tc.Close()
		return nil, fmt.Errorf("libvirtd refused the client certificate after the TLS handshake (%v, %q)", err, ok)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

// connect opens a new connection to t's libvirtd.
func connect(ctx context.Context, t Target) (*libvirt.Libvirt, error) {
	l, _, err := connectRaw(ctx, t)
	return l, err
}

// connectRaw is connect that also returns the connection's socket, so
// that a stream stuck in go-libvirt can be cut from under it (its
// Disconnect is an RPC that can wait forever on a stream's lock).
func connectRaw(ctx context.Context, t Target) (*libvirt.Libvirt, func() net.Conn, error) {
	var mu sync.Mutex
	var raw net.Conn
	l, err := connectWith(ctx, t, func(c net.Conn) { mu.Lock(); raw = c; mu.Unlock() })
	return l, func() net.Conn { mu.Lock(); defer mu.Unlock(); return raw }, err
}

func connectWith(ctx context.Context, t Target, dialed func(net.Conn)) (*libvirt.Libvirt, error) {
	u, err := url.Parse(t.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("%w: libvirt endpoint %q: %v", rackcloud.ErrInvalid, t.Endpoint, err)
	}
	dial := t.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	var dialer socketDialer
	switch u.Scheme {
	case "qemu+unix", "qemu":
		sock := u.Query().Get("socket")
		if sock == "" {
			sock = defaultLibvirtSocket
		}
		dialer = func() (net.Conn, error) { return dial(ctx, "unix", sock) }
	case "qemu+tls":
		if t.TLS == nil {
			return nil, fmt.Errorf("%w: libvirt endpoint %s needs TLS", rackcloud.ErrInvalid, t.Endpoint)
		}
		addr := u.Host
		if u.Port() == "" {
			addr = net.JoinHostPort(u.Hostname(), defaultLibvirtTLSPort)
		}
		dialer = func() (net.Conn, error) { return LibvirtTLSDial(ctx, dial, t.TLS, addr) }
	default:
		return nil, fmt.Errorf("%w: libvirt endpoint %q: want qemu+unix or qemu+tls", rackcloud.ErrInvalid, t.Endpoint)
	}
	inner := dialer
	dialer = func() (net.Conn, error) {
		c, err := inner()
		if err == nil {
			dialed(c)
		}
		return c, err
	}
	l := libvirt.NewWithDialer(dialer)
	if err := l.ConnectToURI(libvirt.QEMUSystem); err != nil {
		return nil, fmt.Errorf("connect to libvirtd on host %s: %w", t.HostID, err)
	}
	return l, nil
}

// client returns the cached connection to t's libvirtd, connecting
// again when there is none or it was lost.
func (d *Libvirt) client(ctx context.Context, t Target) (*lvConn, *libvirt.Libvirt, error) {
	k := connKey{t.HostID, t.Endpoint}
	d.mu.Lock()
	if d.conns == nil {
		d.conns = map[connKey]*lvConn{}
	}
	c := d.conns[k]
	if c == nil {
		c = &lvConn{}
		d.conns[k] = c
	}
	d.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.l != nil && c.l.IsConnected() {
		return c, c.l, nil
	}
	l, err := connect(ctx, t)
	if err != nil {
		return nil, nil, err
	}
	c.l = l
	return c, l, nil
}

// do runs f on t's connection, once more on a new connection when the
// first was lost during f (driver steps are idempotent).
func (d *Libvirt) do(ctx context.Context, t Target, f func(*libvirt.Libvirt) error) error {
	for try := 0; ; try++ {
		_, l, err := d.client(ctx, t)
		if err != nil {
			return err
		}
		err = f(l)
		if err == nil || l.IsConnected() || try > 0 {
			return err
		}
	}
}

// Close disconnects every cached connection.
func (d *Libvirt) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, c := range d.conns {
		c.mu.Lock()
		if c.l != nil {
			_ = c.l.Disconnect()
		}
		c.mu.Unlock()
		delete(d.conns, k)
	}
	return nil
}

func isCode(err error, code libvirt.ErrorNumber) bool {
	var e libvirt.Error
	return errors.As(err, &e) && e.Code == uint32(code)
}

// Names of what the driver makes for a guest.
func domainName(guestID string) string    { return "rc-" + guestID }
func diskVolume(guestID string) string    { return "rc-" + guestID + ".qcow2" }
func consoleVolume(guestID string) string { return "rc-" + guestID + ".console" }
func baseVolume(imageID string) string    { return "img-" + imageID }

// baseMarker is the volume that says the base is complete: its name
// carries the image's checksum, its capacity the base's.
func baseMarker(img Image) string {
	sum := strings.TrimPrefix(img.Checksum, "sha256:")
	if len(sum) > 16 {
		sum = sum[:16]
	}
	return baseVolume(img.ID) + ".ok-" + sum
}

// domainUUID is the guest ID when it is a UUID, else one derived from it.
func domainUUID(guestID string) libvirt.UUID {
	u, err := uuid.Parse(guestID)
	if err != nil {
		u = uuid.NewSHA1(uuid.NameSpaceURL, []byte("rackcloud:guest:"+guestID))
	}
	return libvirt.UUID(u)
}

// pool returns the pool, defining, building and starting it if needed.
func (d *Libvirt) pool(l *libvirt.Libvirt) (libvirt.StoragePool, error) {
	p, err := l.StoragePoolLookupByName(LibvirtPool)
	if isCode(err, libvirt.ErrNoStoragePool) {
		x, merr := (&libvirtxml.StoragePool{Type: "dir", Name: LibvirtPool,
			Target: &libvirtxml.StoragePoolTarget{Path: d.poolDir()}}).Marshal()
		if merr != nil {
			return p, merr
		}
		p, err = l.StoragePoolDefineXML(x, 0)
		if err != nil {
			if p2, lerr := l.StoragePoolLookupByName(LibvirtPool); lerr == nil {
				p, err = p2, nil // defined by a concurrent call
			}
		} else {
			if err := l.StoragePoolBuild(p, 0); err != nil {
				return p, fmt.Errorf("build pool %s: %w", LibvirtPool, err)
			}
			_ = l.StoragePoolSetAutostart(p, 1)
		}
	}
	if err != nil {
		return p, fmt.Errorf("pool %s: %w", LibvirtPool, err)
	}
	active, err := l.StoragePoolIsActive(p)
	if err != nil {
		return p, fmt.Errorf("pool %s: %w", LibvirtPool, err)
	}
	if active == 0 {
		if err := l.StoragePoolCreate(p, 0); err != nil && !isCode(err, libvirt.ErrOperationInvalid) {
			return p, fmt.Errorf("start pool %s: %w", LibvirtPool, err)
		}
	}
	return p, nil
}

// volume looks a volume up; ok is false when there is none.
func volume(l *libvirt.Libvirt, p libvirt.StoragePool, name string) (libvirt.StorageVol, bool, error) {
	v, err := l.StorageVolLookupByName(p, name)
	if isCode(err, libvirt.ErrNoStorageVol) {
		return v, false, nil
	}
	return v, err == nil, err
}

// createVolume makes a volume of format and capacity (sparse), or over
// backing when it is set.
func createVolume(l *libvirt.Libvirt, p libvirt.StoragePool, name, format string, capacity uint64, backing *libvirtxml.StorageVolumeBackingStore) (libvirt.StorageVol, error) {
	x, err := (&libvirtxml.StorageVolume{Name: name,
		Capacity:     &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: capacity},
		Allocation:   &libvirtxml.StorageVolumeSize{Unit: "bytes", Value: 0},
		Target:       &libvirtxml.StorageVolumeTarget{Format: &libvirtxml.StorageVolumeTargetFormat{Type: format}},
		BackingStore: backing}).Marshal()
	if err != nil {
		return libvirt.StorageVol{}, err
	}
	v, err := l.StorageVolCreateXML(p, x, 0)
	if isCode(err, libvirt.ErrStorageVolExist) {
		return l.StorageVolLookupByName(p, name)
	}
	return v, err
}

func deleteVolume(l *libvirt.Libvirt, p libvirt.StoragePool, name string) error {
	v, ok, err := volume(l, p, name)
	if err != nil || !ok {
		return err
	}
	if err := l.StorageVolDelete(v, 0); err != nil && !isCode(err, libvirt.ErrNoStorageVol) {
		return fmt.Errorf("delete volume %s: %w", name, err)
	}
	return nil
}

// baseFormat is the disk format of an image's base volume.
func baseFormat(f rackcloud.ImageFormat) (string, error) {
	switch f {
	case rackcloud.FormatRaw, rackcloud.FormatRawZstd:
		return "raw", nil
	case rackcloud.FormatQCOW2:
		return "qcow2", nil
	}
	return "", fmt.Errorf("%w: image format %q is not a VM disk (raw, raw+zstd, qcow2)", rackcloud.ErrInvalid, f)
}

// ctxReader stops a stream when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// zstdReader decompresses src and, at the end of the data, reads src to
// its end, so that src's checksum error is not lost.
type zstdReader struct {
	dec *zstd.Decoder
	src io.Reader
}

func (z zstdReader) Read(p []byte) (int, error) {
	n, err := z.dec.Read(p)
	if err == io.EOF {
		if _, derr := io.Copy(io.Discard, z.src); derr != nil {
			return n, derr
		}
	}
	return n, err
}

// upload streams r into vol on a connection of its own (a stream holds
// its connection until it ends; an interrupted one is dropped with it).
func (d *Libvirt) upload(ctx context.Context, t Target, vol libvirt.StorageVol, r io.Reader) error {
	return stream(ctx, t, func(l *libvirt.Libvirt) error { return l.StorageVolUpload(vol, ctxReader{ctx, r}, 0, 0, 0) })
}

// streamCutWait is how long a stream cut on cancel may take to notice.
const streamCutWait = 10 * time.Second

// stream runs f, a volume stream, on a connection of its own. When ctx
// ends first, the connection's socket is closed under it (not a
// Disconnect RPC, which can wait forever on the stream's lock) and f is
// given streamCutWait to return; after that it is left behind rather
// than hang the caller.
func stream(ctx context.Context, t Target, f func(*libvirt.Libvirt) error) error {
	l, raw, err := connectRaw(ctx, t)
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- f(l) }()
	select {
	case err := <-done:
		hungUp := make(chan struct{})
		go func() { _ = l.Disconnect(); close(hungUp) }()
		select {
		case <-hungUp:
		case <-time.After(streamCutWait):
			if c := raw(); c != nil {
				_ = c.Close()
			}
		}
		return err
	case <-ctx.Done():
		if c := raw(); c != nil {
			_ = c.Close()
		}
		select {
		case <-done:
		case <-time.After(streamCutWait):
		}
		return context.Cause(ctx)
	}
}

// ensureBase uploads the image into its base volume unless a complete
// one is there, and returns the base's path, format and capacity.
func (d *Libvirt) ensureBase(ctx context.Context, t Target, l *libvirt.Libvirt, p libvirt.StoragePool, img Image) (string, string, uint64, error) {
	format, err := baseFormat(img.Format)
	if err != nil {
		return "", "", 0, err
	}
	name := baseVolume(img.ID)
	base, ok, err := volume(l, p, name)
	if err != nil {
		return "", "", 0, err
	}
	if ok {
		if m, mok, err := volume(l, p, baseMarker(img)); err == nil && mok {
			_, mcap, _, err1 := l.StorageVolGetInfo(m)
			_, bcap, _, err2 := l.StorageVolGetInfo(base)
			if err1 == nil && err2 == nil && mcap == bcap {
				path, err := l.StorageVolGetPath(base)
				return path, format, bcap, err
			}
		}
		// Half-uploaded or of another checksum: start clean.
		if err := l.StorageVolDelete(base, 0); err != nil {
			return "", "", 0, fmt.Errorf("delete incomplete base %s: %w", name, err)
		}
	}
	_ = deleteVolume(l, p, baseMarker(img))
	base, err = createVolume(l, p, name, "raw", 0, nil)
	if err != nil {
		return "", "", 0, fmt.Errorf("create base %s: %w", name, err)
	}
	err = func() error {
		rc, err := img.Open(ctx)
		if err != nil {
			return err
		}
		defer rc.Close()
		var r io.Reader = rc
		if img.Format == rackcloud.FormatRawZstd {
			dec, err := zstd.NewReader(rc)
			if err != nil {
				return err
			}
			defer dec.Close()
			r = zstdReader{dec, rc}
		}
		return d.upload(ctx, t, base, r)
	}()
	if err != nil {
		if derr := l.StorageVolDelete(base, 0); derr != nil {
			err = errors.Join(err, fmt.Errorf("delete half-uploaded base %s: %w", name, derr))
		}
		return "", "", 0, fmt.Errorf("upload image %s to host %s: %w", img.ID, t.HostID, err)
	}
	_, bcap, _, err := l.StorageVolGetInfo(base)
	if err != nil {
		return "", "", 0, err
	}
	if _, err := createVolume(l, p, baseMarker(img), "raw", bcap, nil); err != nil {
		return "", "", 0, fmt.Errorf("mark base %s complete: %w", name, err)
	}
	path, err := l.StorageVolGetPath(base)
	return path, format, bcap, err
}

// Prepare implements Driver: the pool, the base image (uploaded once per
// host) and the guest's qcow2 disk over it.
func (d *Libvirt) Prepare(ctx context.Context, t Target, s Spec) error {
	err := d.do(ctx, t, func(l *libvirt.Libvirt) error {
		p, err := d.pool(l)
		if err != nil {
			return err
		}
		if _, ok, err := volume(l, p, diskVolume(s.GuestID)); err != nil || ok {
			return err
		}
		path, format, bcap, err := d.ensureBase(ctx, t, l, p, s.Image)
		if err != nil {
			return err
		}
		capacity := max(uint64(s.Flavor.DiskGiB)<<30, bcap)
		_, err = createVolume(l, p, diskVolume(s.GuestID), "qcow2", capacity,
			&libvirtxml.StorageVolumeBackingStore{Path: path, Format: &libvirtxml.StorageVolumeTargetFormat{Type: format}})
		return err
	})
	if err != nil {
		return fmt.Errorf("prepare guest %s on host %s: %w", s.GuestID, t.HostID, err)
	}
	return nil
}

// guestMeta is the domain's metadata element.
type guestMeta struct {
	XMLName xml.Name `xml:"https://rackcloud.dev/xmlns/libvirt/guest/1 guest"`
	ID      string   `xml:"id"`
	Name    string   `xml:"name,omitempty"`
	Project string   `xml:"project,omitempty"`
}

// domainType decides kvm or qemu for the host, once per connection.
func (d *Libvirt) domainType(ctx context.Context, t Target) (string, error) {
	if d.DomainType != "" {
		return d.DomainType, nil
	}
	c, l, err := d.client(ctx, t)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.domType == "" {
		c.domType = "qemu"
		if _, err := l.ConnectGetDomainCapabilities(nil, []string{"x86_64"}, nil, []string{"kvm"}, 0); err == nil {
			c.domType = "kvm"
		}
	}
	return c.domType, nil
}

// DomainXML is the domain of guest s on a host whose pool is at poolDir.
func DomainXML(s Spec, domType, poolDir string) (string, error) {
	meta, err := xml.Marshal(guestMeta{ID: s.GuestID, Name: s.Name, Project: s.ProjectID})
	if err != nil {
		return "", err
	}
	port := uint(0)
	dom := &libvirtxml.Domain{
		Type: domType, Name: domainName(s.GuestID), UUID: uuid.UUID(domainUUID(s.GuestID)).String(),
		Metadata: &libvirtxml.DomainMetadata{XML: string(meta)},
		Memory:   &libvirtxml.DomainMemory{Value: uint(max(s.Flavor.MemoryMiB, 64)), Unit: "MiB"},
		VCPU:     &libvirtxml.DomainVCPU{Value: uint(max(s.Flavor.CPUCores, 1))},
		OS: &libvirtxml.DomainOS{Type: &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"},
			BootDevices: []libvirtxml.DomainBootDevice{{Dev: "hd"}}},
		OnPoweroff: "destroy", OnReboot: "restart", OnCrash: "destroy",
		Devices: &libvirtxml.DomainDeviceList{
			Disks: []libvirtxml.DomainDisk{{Device: "disk",
				Driver: &libvirtxml.DomainDiskDriver{Name: "qemu", Type: "qcow2"},
				Source: &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: path.Join(poolDir, diskVolume(s.GuestID))}},
				Target: &libvirtxml.DomainDiskTarget{Dev: "vda", Bus: "virtio"}}},
			Serials: []libvirtxml.DomainSerial{{
				Source: &libvirtxml.DomainChardevSource{File: &libvirtxml.DomainChardevSourceFile{
					Path: path.Join(poolDir, consoleVolume(s.GuestID)), Append: "off"}},
				Target: &libvirtxml.DomainSerialTarget{Port: &port}}},
			MemBalloon: &libvirtxml.DomainMemBalloon{Model: "none"},
		},
	}
	if domType == "qemu" {
		dom.CPU = &libvirtxml.DomainCPU{Mode: "custom", Model: &libvirtxml.DomainCPUModel{Fallback: "allow", Value: "qemu64"}}
	}
	return dom.Marshal()
}

// Create implements Driver: it defines the domain rc-<guest ID>.
func (d *Libvirt) Create(ctx context.Context, t Target, s Spec) (string, error) {
	domType, err := d.domainType(ctx, t)
	if err != nil {
		return "", fmt.Errorf("create guest %s on host %s: %w", s.GuestID, t.HostID, err)
	}
	x, err := DomainXML(s, domType, d.poolDir())
	if err != nil {
		return "", err
	}
	var handle string
	err = d.do(ctx, t, func(l *libvirt.Libvirt) error {
		if dom, err := l.DomainLookupByUUID(domainUUID(s.GuestID)); err == nil {
			handle = uuid.UUID(dom.UUID).String()
			return nil
		}
		p, err := d.pool(l)
		if err != nil {
			return err
		}
		if _, err := createVolume(l, p, consoleVolume(s.GuestID), "raw", 0, nil); err != nil {
			return fmt.Errorf("console log volume: %w", err)
		}
		dom, err := l.DomainDefineXMLFlags(x, 0)
		if isCode(err, libvirt.ErrDomExist) || isCode(err, libvirt.ErrOperationFailed) {
			dom, err = l.DomainLookupByUUID(domainUUID(s.GuestID))
		}
		if err != nil {
			return err
		}
		handle = uuid.UUID(dom.UUID).String()
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("create guest %s on host %s: %w", s.GuestID, t.HostID, err)
	}
	return handle, nil
}

// lookup finds the guest's domain; ok is false when there is none.
func lookup(l *libvirt.Libvirt, guestID string) (libvirt.Domain, bool, error) {
	dom, err := l.DomainLookupByUUID(domainUUID(guestID))
	if libvirt.IsNotFound(err) {
		return dom, false, nil
	}
	return dom, err == nil, err
}

// withDomain runs f on the guest's domain; a missing one is
// rackcloud.ErrNotFound.
func (d *Libvirt) withDomain(ctx context.Context, t Target, s Spec, what string, f func(*libvirt.Libvirt, libvirt.Domain) error) error {
	err := d.do(ctx, t, func(l *libvirt.Libvirt) error {
		dom, ok, err := lookup(l, s.GuestID)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("domain %s: %w", domainName(s.GuestID), rackcloud.ErrNotFound)
		}
		return f(l, dom)
	})
	if err != nil {
		return fmt.Errorf("%s guest %s on host %s: %w", what, s.GuestID, t.HostID, err)
	}
	return nil
}

func state(l *libvirt.Libvirt, dom libvirt.Domain) (libvirt.DomainState, int32, error) {
	st, reason, err := l.DomainGetState(dom, 0)
	return libvirt.DomainState(st), reason, err
}

// Start implements Driver.
func (d *Libvirt) Start(ctx context.Context, t Target, s Spec) error {
	return d.withDomain(ctx, t, s, "start", func(l *libvirt.Libvirt, dom libvirt.Domain) error {
		st, _, err := state(l, dom)
		if err != nil {
			return err
		}
		switch st {
		case libvirt.DomainRunning, libvirt.DomainBlocked:
			return nil
		case libvirt.DomainPaused:
			return l.DomainResume(dom)
		}
		err = l.DomainCreate(dom)
		if isCode(err, libvirt.ErrOperationInvalid) {
			if st, _, serr := state(l, dom); serr == nil && st == libvirt.DomainRunning {
				return nil // started by a concurrent call
			}
		}
		return err
	})
}

// Stop implements Driver: an ACPI shutdown, then destroy once grace has
// passed.
func (d *Libvirt) Stop(ctx context.Context, t Target, s Spec, grace time.Duration) error {
	return d.withDomain(ctx, t, s, "stop", func(l *libvirt.Libvirt, dom libvirt.Domain) error {
		st, _, err := state(l, dom)
		if err != nil || st == libvirt.DomainShutoff || st == libvirt.DomainCrashed {
			return err
		}
		if grace > 0 && st == libvirt.DomainRunning {
			_ = l.DomainShutdownFlags(dom, libvirt.DomainShutdownAcpiPowerBtn)
			deadline := time.NewTimer(grace)
			defer deadline.Stop()
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
		wait:
			for {
				select {
				case <-ctx.Done():
					return context.Cause(ctx)
				case <-deadline.C:
					break wait
				case <-tick.C:
					if st, _, err := state(l, dom); err == nil && st == libvirt.DomainShutoff {
						return nil
					}
				}
			}
		}
		err = l.DomainDestroyFlags(dom, 0)
		if isCode(err, libvirt.ErrOperationInvalid) {
			if st, _, serr := state(l, dom); serr == nil && st == libvirt.DomainShutoff {
				return nil
			}
		}
		return err
	})
}

// Reboot implements Driver: a hard reset (guests without ACPI handling
// reboot too); a guest that does not run is rackcloud.ErrConflict.
func (d *Libvirt) Reboot(ctx context.Context, t Target, s Spec) error {
	return d.withDomain(ctx, t, s, "reboot", func(l *libvirt.Libvirt, dom libvirt.Domain) error {
		st, _, err := state(l, dom)
		if err != nil {
			return err
		}
		if st != libvirt.DomainRunning && st != libvirt.DomainBlocked {
			return fmt.Errorf("%w: domain %s does not run", rackcloud.ErrConflict, domainName(s.GuestID))
		}
		return l.DomainReset(dom, 0)
	})
}

// Delete implements Driver: destroy, undefine (with NVRAM), and delete
// the guest's disk and console log volumes.
func (d *Libvirt) Delete(ctx context.Context, t Target, s Spec) error {
	err := d.do(ctx, t, func(l *libvirt.Libvirt) error {
		dom, ok, err := lookup(l, s.GuestID)
		if err != nil {
			return err
		}
		if ok {
			if active, err := l.DomainIsActive(dom); err == nil && active != 0 {
				if err := l.DomainDestroyFlags(dom, 0); err != nil && !isCode(err, libvirt.ErrOperationInvalid) {
					return err
				}
			}
			err := l.DomainUndefineFlags(dom, libvirt.DomainUndefineNvram|libvirt.DomainUndefineManagedSave)
			if err != nil && !libvirt.IsNotFound(err) {
				return err
			}
		}
		p, err := d.pool(l)
		if err != nil {
			return err
		}
		for _, v := range []string{diskVolume(s.GuestID), consoleVolume(s.GuestID)} {
			if err := deleteVolume(l, p, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete guest %s on host %s: %w", s.GuestID, t.HostID, err)
	}
	return nil
}

// observed maps a domain's state and reason.
func observed(st libvirt.DomainState, reason int32) (ObservedState, string) {
	switch st {
	case libvirt.DomainRunning, libvirt.DomainBlocked, libvirt.DomainShutdown:
		return ObservedRunning, ""
	case libvirt.DomainPaused, libvirt.DomainPmsuspended:
		return ObservedPaused, ""
	case libvirt.DomainCrashed:
		return ObservedCrashed, "crashed"
	case libvirt.DomainShutoff:
		switch libvirt.DomainShutoffReason(reason) {
		case libvirt.DomainShutoffCrashed:
			return ObservedCrashed, "crashed"
		case libvirt.DomainShutoffFailed:
			return ObservedCrashed, "failed to start"
		}
		return ObservedStopped, ""
	}
	return ObservedStopped, fmt.Sprintf("state %d reason %d", st, reason)
}

// Observe implements Driver.
func (d *Libvirt) Observe(ctx context.Context, t Target, s Spec) (Observed, error) {
	var o Observed
	err := d.do(ctx, t, func(l *libvirt.Libvirt) error {
		dom, ok, err := lookup(l, s.GuestID)
		if err != nil {
			return err
		}
		if !ok {
			o = Observed{State: ObservedMissing}
			return nil
		}
		st, reason, err := state(l, dom)
		if err != nil {
			return err
		}
		o.State, o.Detail = observed(st, reason)
		o.Handle = uuid.UUID(dom.UUID).String()
		return nil
	})
	if err != nil {
		return Observed{}, fmt.Errorf("observe guest %s on host %s: %w", s.GuestID, t.HostID, err)
	}
	return o, nil
}

// List implements Lister: the domains named rc-*, keyed by the guest ID
// in their metadata.
func (d *Libvirt) List(ctx context.Context, t Target) (map[string]Observed, error) {
	out := map[string]Observed{}
	err := d.do(ctx, t, func(l *libvirt.Libvirt) error {
		doms, _, err := l.ConnectListAllDomains(1, 0)
		if err != nil {
			return err
		}
		for _, dom := range doms {
			if !strings.HasPrefix(dom.Name, "rc-") {
				continue
			}
			id := strings.TrimPrefix(dom.Name, "rc-")
			if m, err := l.DomainGetMetadata(dom, int32(libvirt.DomainMetadataElement), []string{LibvirtMetadataNS}, 0); err == nil {
				var g guestMeta
				if xml.Unmarshal([]byte(m), &g) == nil && g.ID != "" {
					id = g.ID
				}
			}
			st, reason, err := state(l, dom)
			if libvirt.IsNotFound(err) {
				continue // deleted meanwhile
			}
			if err != nil {
				return err
			}
			o := Observed{Handle: uuid.UUID(dom.UUID).String()}
			o.State, o.Detail = observed(st, reason)
			out[id] = o
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list guests on host %s: %w", t.HostID, err)
	}
	return out, nil
}

// Probe implements Prober.
func (d *Libvirt) Probe(ctx context.Context, t Target) (Capacity, error) {
	var c Capacity
	domType, err := d.domainType(ctx, t)
	if err != nil {
		return c, fmt.Errorf("probe host %s: %w", t.HostID, err)
	}
	err = d.do(ctx, t, func(l *libvirt.Libvirt) error {
		_, memKiB, cpus, _, _, _, _, _, err := l.NodeGetInfo()
		if err != nil {
			return err
		}
		p, err := d.pool(l)
		if err != nil {
			return err
		}
		_, capacity, _, _, err := l.StoragePoolGetInfo(p)
		if err != nil {
			return err
		}
		lib, err := l.ConnectGetLibVersion()
		if err != nil {
			return err
		}
		hv, err := l.ConnectGetVersion()
		if err != nil {
			return err
		}
		c.Resources = rackcloud.Resources{CPUCores: int(cpus), MemoryMiB: int64(memKiB / 1024), DiskGiB: int64(capacity >> 30)}
		c.Daemon = fmt.Sprintf("libvirt %s, QEMU %s, domain type %s", version(lib), version(hv), domType)
		return nil
	})
	if err != nil {
		return Capacity{}, fmt.Errorf("probe host %s: %w", t.HostID, err)
	}
	return c, nil
}

func version(v uint64) string { return fmt.Sprintf("%d.%d.%d", v/1000000, v/1000%1000, v%1000) }

// download streams vol into w on a connection of its own.
func (d *Libvirt) download(ctx context.Context, t Target, vol libvirt.StorageVol, w io.Writer) error {
	return stream(ctx, t, func(l *libvirt.Libvirt) error { return l.StorageVolDownload(vol, w, 0, 0, 0) })
}

// ConsoleLog returns what the guest wrote on its serial console since it
// last started, read through libvirt (the pool volume rc-<id>.console).
func (d *Libvirt) ConsoleLog(ctx context.Context, t Target, s Spec) (string, error) {
	var vol libvirt.StorageVol
	err := d.do(ctx, t, func(l *libvirt.Libvirt) error {
		p, err := d.pool(l)
		if err != nil {
			return err
		}
		v, ok, err := volume(l, p, consoleVolume(s.GuestID))
		if err == nil && !ok {
			err = fmt.Errorf("console log: %w", rackcloud.ErrNotFound)
		}
		vol = v
		return err
	})
	if err != nil {
		return "", fmt.Errorf("console of guest %s on host %s: %w", s.GuestID, t.HostID, err)
	}
	var b strings.Builder
	if err := d.download(ctx, t, vol, &b); err != nil {
		return "", fmt.Errorf("console of guest %s on host %s: %w", s.GuestID, t.HostID, err)
	}
	return b.String(), nil
}

// ExportDisk implements DiskMover: the stopped guest's qcow2 overlay as
// it is on the host (its base is not included: ImportDisk uploads the
// base from the image store).
func (d *Libvirt) ExportDisk(ctx context.Context, t Target, s Spec) (io.ReadCloser, int64, error) {
	var vol libvirt.StorageVol
	var size int64
	err := d.do(ctx, t, func(l *libvirt.Libvirt) error {
		if dom, ok, err := lookup(l, s.GuestID); err != nil {
			return err
		} else if ok {
			if active, err := l.DomainIsActive(dom); err != nil {
				return err
			} else if active != 0 {
				return fmt.Errorf("%w: domain %s runs; stop it first", rackcloud.ErrConflict, domainName(s.GuestID))
			}
		}
		p, err := d.pool(l)
		if err != nil {
			return err
		}
		v, ok, err := volume(l, p, diskVolume(s.GuestID))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("disk %s: %w", diskVolume(s.GuestID), rackcloud.ErrNotFound)
		}
		_, _, physical, err := l.StorageVolGetInfoFlags(v, uint32(libvirt.StorageVolGetPhysical))
		if err != nil {
			return err
		}
		vol, size = v, int64(physical)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("export disk of guest %s from host %s: %w", s.GuestID, t.HostID, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(d.download(ctx, t, vol, pw)) }()
	return &exportReader{PipeReader: pr, cancel: cancel}, size, nil
}

type exportReader struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (e *exportReader) Close() error {
	e.cancel()
	return e.PipeReader.Close()
}

// countReader counts what it reads.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ImportDisk implements DiskMover: the base image as Prepare uploads it,
// then the exported overlay as the guest's disk (replacing a partial one
// from an earlier try).
func (d *Libvirt) ImportDisk(ctx context.Context, t Target, s Spec, r io.Reader, size int64) error {
	err := d.do(ctx, t, func(l *libvirt.Libvirt) error {
		p, err := d.pool(l)
		if err != nil {
			return err
		}
		if _, _, _, err := d.ensureBase(ctx, t, l, p, s.Image); err != nil {
			return err
		}
		if dom, ok, err := lookup(l, s.GuestID); err != nil {
			return err
		} else if ok {
			if active, err := l.DomainIsActive(dom); err == nil && active != 0 {
				return fmt.Errorf("%w: domain %s runs here", rackcloud.ErrConflict, domainName(s.GuestID))
			}
		}
		if err := deleteVolume(l, p, diskVolume(s.GuestID)); err != nil {
			return err
		}
		vol, err := createVolume(l, p, diskVolume(s.GuestID), "raw", 0, nil)
		if err != nil {
			return err
		}
		cr := &countReader{r: io.LimitReader(r, size+1)}
		err = d.upload(ctx, t, vol, cr)
		if err == nil && cr.n != size {
			err = fmt.Errorf("disk stream had %d bytes, want %d", cr.n, size)
		}
		if err != nil {
			_ = l.StorageVolDelete(vol, 0)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("import disk of guest %s to host %s: %w", s.GuestID, t.HostID, err)
	}
	return nil
}
