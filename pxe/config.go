package pxe

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/rackcloud/rackcloud"
)

// DHCPMode says how the DHCP server takes part on the provisioning network.
type DHCPMode string

// DHCP modes.
const (
	// DHCPFull is a full DHCP server that owns the network's addresses (an
	// isolated provisioning network).
	DHCPFull DHCPMode = "full"
	// DHCPProxy answers only network-boot clients with boot information and
	// leaves addresses to the site's DHCP server (PXE proxyDHCP, ports 67
	// and 4011).
	DHCPProxy DHCPMode = "proxy"
	// DHCPOff runs no DHCP server (TFTP and HTTP only).
	DHCPOff DHCPMode = "off"
)

// Defaults for Config.
const (
	DefaultDHCPMode       = DHCPFull
	DefaultDHCPPort       = 67
	DefaultProxyPort      = 4011
	DefaultLeaseTime      = time.Hour
	DefaultOfferHold      = 30 * time.Second
	DefaultDeclineHold    = 10 * time.Minute
	DefaultTFTPPort       = 69
	DefaultTFTPRoot       = "/usr/lib/ipxe"
	DefaultTFTPBlockSize  = 1468
	DefaultTFTPTimeout    = 5 * time.Second
	DefaultTFTPRetries    = 5
	DefaultHTTPPort       = 8080
	DefaultBIOSBootFile   = "undionly.kpxe"
	DefaultUEFIBootFile   = "snponly.efi"
	DefaultRAInterval     = 10 * time.Second
	DefaultLookupTimeout  = 2 * time.Second
	DefaultEventsPerMAC   = 256
	DefaultEventMACs      = 4096
	DefaultDiscoveryImage = "inspect"
	DefaultCmdline        = "console=ttyS0 quiet"
	DefaultShutdownWait   = 5 * time.Second
)

// Config configures the boot service. Zero fields take the Default*
// values (see WithDefaults); flags are bound only in cmd/rackcloud.
type Config struct {
	// Interface is the provisioning network interface (a bridge or NIC):
	// DHCP binds to it and router advertisements are sent on it. Required
	// unless DHCPMode is DHCPOff and RAInterval < 0.
	Interface string
	// Netns, when set, is the path of a network namespace
	// (/run/netns/NAME) in which every socket of the service is opened,
	// while the service talks to the control plane from the caller's own
	// namespace.
	Netns string
	// ServerIP is this service's IPv4 address on the provisioning network:
	// the DHCP server identifier, the TFTP next-server and the host of
	// every boot URL. Required.
	ServerIP netip.Addr
	// StateDir holds the lease file (leases.json) and the hashes of the
	// boot tokens handed out (TokenFileName). Required in full DHCP mode,
	// so that leases survive a restart; without it, boot tokens are kept
	// in memory only and a restart refuses the callbacks of boots begun
	// before it.
	StateDir string

	// DHCPMode selects a full server, a proxyDHCP or none.
	DHCPMode DHCPMode
	// DHCPPort and ProxyPort are the server ports (67 and 4011; other
	// values only for tests and benchmarks).
	DHCPPort  int
	ProxyPort int
	// Subnet is the provisioning network (full mode), e.g. 10.88.0.0/24.
	Subnet netip.Prefix
	// RangeStart and RangeEnd bound the dynamic pool (full mode); zero
	// means the whole subnet but its network, broadcast and ServerIP.
	RangeStart, RangeEnd netip.Addr
	// Router and DNS are handed out when valid.
	Router netip.Addr
	DNS    []netip.Addr
	// LeaseTime is the lease duration handed out.
	LeaseTime time.Duration
	// OfferHold is how long an offered address is kept for the client.
	OfferHold time.Duration
	// DeclineHold is how long an address a client declined stays unused.
	DeclineHold time.Duration
	// Reservations pin MACs (lower-case colon form) to addresses; they
	// win over the ProfileSource's Profile.IPv4.
	Reservations map[string]netip.Addr

	// TFTPAddr is where TFTP listens; zero means ServerIP:69.
	TFTPAddr netip.AddrPort
	// TFTPRoot is the read-only directory served over TFTP and under
	// /ipxe/ over HTTP (Debian's ipxe package puts its binaries in
	// /usr/lib/ipxe). Symlinks leading out of it are not followed: Debian's
	// ipxe.efi is one (to /boot/ipxe.efi), undionly.kpxe and snponly.efi
	// are regular files.
	TFTPRoot string
	// TFTPBlockSize caps the negotiated blksize (an Ethernet frame holds
	// 1468 bytes of TFTP data).
	TFTPBlockSize int
	// TFTPTimeout and TFTPRetries bound each block's retransmissions.
	TFTPTimeout time.Duration
	TFTPRetries int

	// HTTPAddr is where HTTP listens; zero means ServerIP:8080. Port 0
	// picks a free port (see Service.HTTPAddr).
	HTTPAddr netip.AddrPort
	// MetricsAddr, when set, is a second HTTP listener serving only GET
	// /metrics and /healthz, opened in the process's own network
	// namespace rather than Netns: a Prometheus outside the provisioning
	// network (the lab's, on the host's loopback) scrapes the service
	// there. Port 0 picks a free port (see Service.MetricsAddr).
	MetricsAddr netip.AddrPort
	// FilesDir is served under /files/: kernels, initrds and images.
	FilesDir string

	// BIOSBootFile and UEFIBootFile are the iPXE binaries (in TFTPRoot)
	// handed to PXE firmware.
	BIOSBootFile string
	UEFIBootFile string

	// AutoDiscovery boots unknown MACs into the discovery (inspection)
	// image; when false they are told to boot from their next device.
	AutoDiscovery bool
	// Discovery is the inspection image: kernel and initrd paths relative
	// to FilesDir (or absolute URLs) and its command line. It is also used
	// for known hosts whose profile names no kernel while they are
	// discovered, inspecting or available.
	Discovery rackcloud.BootProfile

	// RAInterval is the period of unsolicited IPv6 router advertisements
	// on Interface (router solicitations are answered at once); negative
	// disables them.
	RAInterval time.Duration
	// LookupTimeout bounds one ProfileSource lookup.
	LookupTimeout time.Duration
	// EventsPerMAC and EventMACs bound the in-memory boot timelines.
	EventsPerMAC int
	EventMACs    int
}

// WithDefaults returns c with its zero fields set to the defaults.
func (c Config) WithDefaults() Config {
	c.DHCPMode = cmp.Or(c.DHCPMode, DefaultDHCPMode)
	c.DHCPPort = cmp.Or(c.DHCPPort, DefaultDHCPPort)
	c.ProxyPort = cmp.Or(c.ProxyPort, DefaultProxyPort)
	c.LeaseTime = cmp.Or(c.LeaseTime, DefaultLeaseTime)
	c.OfferHold = cmp.Or(c.OfferHold, DefaultOfferHold)
	c.DeclineHold = cmp.Or(c.DeclineHold, DefaultDeclineHold)
	if !c.TFTPAddr.IsValid() && c.ServerIP.IsValid() {
		c.TFTPAddr = netip.AddrPortFrom(c.ServerIP, DefaultTFTPPort)
	}
	c.TFTPRoot = cmp.Or(c.TFTPRoot, DefaultTFTPRoot)
	c.TFTPBlockSize = cmp.Or(c.TFTPBlockSize, DefaultTFTPBlockSize)
	c.TFTPTimeout = cmp.Or(c.TFTPTimeout, DefaultTFTPTimeout)
	c.TFTPRetries = cmp.Or(c.TFTPRetries, DefaultTFTPRetries)
	if !c.HTTPAddr.IsValid() && c.ServerIP.IsValid() {
		c.HTTPAddr = netip.AddrPortFrom(c.ServerIP, DefaultHTTPPort)
	}
	c.BIOSBootFile = cmp.Or(c.BIOSBootFile, DefaultBIOSBootFile)
	c.UEFIBootFile = cmp.Or(c.UEFIBootFile, DefaultUEFIBootFile)
	c.Discovery.Kernel = cmp.Or(c.Discovery.Kernel, DefaultDiscoveryImage+"/vmlinuz")
	c.Discovery.Initrd = cmp.Or(c.Discovery.Initrd, DefaultDiscoveryImage+"/initrd.img")
	c.Discovery.Cmdline = cmp.Or(c.Discovery.Cmdline, DefaultCmdline)
	c.RAInterval = cmp.Or(c.RAInterval, DefaultRAInterval)
	c.LookupTimeout = cmp.Or(c.LookupTimeout, DefaultLookupTimeout)
	c.EventsPerMAC = cmp.Or(c.EventsPerMAC, DefaultEventsPerMAC)
	c.EventMACs = cmp.Or(c.EventMACs, DefaultEventMACs)
	if c.DHCPMode == DHCPFull && c.Subnet.IsValid() && c.Subnet.Addr().Is4() { // Validate refuses the rest
		c.Subnet = c.Subnet.Masked()
		if !c.RangeStart.IsValid() {
			c.RangeStart = c.Subnet.Addr().Next()
		}
		if !c.RangeEnd.IsValid() {
			c.RangeEnd = lastAddr(c.Subnet).Prev()
		}
	}
	return c
}

// Validate reports every problem of a defaulted config at once, wrapped in
// rackcloud.ErrInvalid.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !c.ServerIP.Is4() {
		bad("server IP %v: want an IPv4 address", c.ServerIP)
	}
	switch c.DHCPMode {
	case DHCPFull:
		if !c.Subnet.IsValid() || !c.Subnet.Addr().Is4() {
			bad("full DHCP needs an IPv4 subnet, got %v", c.Subnet)
		} else {
			if c.ServerIP.IsValid() && !c.Subnet.Contains(c.ServerIP) {
				bad("server IP %v is outside subnet %v", c.ServerIP, c.Subnet)
			}
			if !c.Subnet.Contains(c.RangeStart) || !c.Subnet.Contains(c.RangeEnd) || c.RangeEnd.Less(c.RangeStart) {
				bad("pool %v-%v is not an ordered range inside %v", c.RangeStart, c.RangeEnd, c.Subnet)
			}
			for mac, ip := range c.Reservations {
				if !c.Subnet.Contains(ip) {
					bad("reservation %s -> %v is outside subnet %v", mac, ip, c.Subnet)
				}
				if norm, err := rackcloud.NormalizeMAC(mac); err != nil || norm != mac {
					bad("reservation key %q: want a lower-case colon MAC", mac)
				}
			}
		}
		if c.StateDir == "" {
			bad("full DHCP needs a state directory for its leases")
		}
		if c.Interface == "" {
			bad("DHCP needs an interface")
		}
	case DHCPProxy:
		if c.Interface == "" {
			bad("DHCP needs an interface")
		}
	case DHCPOff:
	default:
		bad("DHCP mode %q: want full, proxy or off", c.DHCPMode)
	}
	if c.RAInterval > 0 && c.Interface == "" {
		bad("router advertisements need an interface (or a negative RA interval)")
	}
	if !c.HTTPAddr.IsValid() {
		bad("HTTP address %v is not valid", c.HTTPAddr)
	}
	if !c.TFTPAddr.IsValid() {
		bad("TFTP address %v is not valid", c.TFTPAddr)
	}
	if c.TFTPBlockSize < 512 || c.TFTPBlockSize > 65464 {
		bad("TFTP block size %d: want 512..65464", c.TFTPBlockSize)
	}
	if c.LeaseTime < time.Minute {
		bad("lease time %v: want at least a minute", c.LeaseTime)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("pxe config: %w: %w", rackcloud.ErrInvalid, errors.Join(errs...))
}

// lastAddr is p's broadcast address (IPv4).
func lastAddr(p netip.Prefix) netip.Addr {
	return addr(u32(p.Masked().Addr()) | ^uint32(0)>>p.Bits())
}
