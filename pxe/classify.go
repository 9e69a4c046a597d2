package pxe

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// ClientKind is what kind of boot client sent a DHCP packet, which decides
// the next stage it is given.
type ClientKind string

// Boot clients.
const (
	// ClientDHCP is a plain DHCP client (an OS, the initramfs): addresses
	// only.
	ClientDHCP ClientKind = "dhcp"
	// ClientBIOS is legacy BIOS PXE firmware (arch 0): gets the BIOS iPXE
	// binary over TFTP.
	ClientBIOS ClientKind = "bios"
	// ClientUEFI is x86-64 UEFI PXE firmware (arch 7 or 9): gets the UEFI
	// iPXE binary over TFTP.
	ClientUEFI ClientKind = "uefi"
	// ClientUEFIHTTP is UEFI HTTP boot (arch 16, vendor class HTTPClient):
	// gets the UEFI iPXE binary as an HTTP URL.
	ClientUEFIHTTP ClientKind = "uefi-http"
	// ClientIPXE is iPXE itself (option 77 "iPXE" or option 175): gets the
	// URL of its boot script.
	ClientIPXE ClientKind = "ipxe"
	// ClientUnsupported is a network-boot client of an architecture
	// rackcloud has no binary for (ARM, IA32...): addresses only.
	ClientUnsupported ClientKind = "unsupported"
)

// DHCP options of network boot clients.
const (
	optUserClass  = dhcpv4.OptionUserClassInformation         // 77
	optClientArch = dhcpv4.OptionClientSystemArchitectureType // 93
	optClientGUID = dhcpv4.OptionClientMachineIdentifier      // 97
	optVendor     = dhcpv4.OptionClassIdentifier              // 60
	optIPXE       = dhcpv4.GenericOptionCode(175)
)

// iPXE encapsulated options (inside option 175).
const (
	ipxeOptEFI       = 0x24 // feature: running under EFI
	ipxeOptNoPXEDHCP = 176  // setting: do not wait for ProxyDHCP
)

// Client is the classification of one DHCP request.
type Client struct {
	Kind ClientKind
	// Arch is option 93's first architecture; HasArch says it was there.
	Arch    iana.Arch
	HasArch bool
	// Vendor is option 60; PXE and HTTP say it starts with PXEClient or
	// HTTPClient.
	Vendor string
	PXE    bool
	HTTP   bool
	// IPXE is set for iPXE; IPXEFeatures are the option-175 sub-options it
	// announced (feature code -> value).
	IPXE         bool
	IPXEFeatures map[uint8][]byte
	// UserClass is option 77 (RFC 3004 list or iPXE's raw string).
	UserClass []string
}

// NetBoot reports whether the client wants boot information.
func (c Client) NetBoot() bool {
	return c.Kind != ClientDHCP && c.Kind != ClientUnsupported
}

// IPXEUnderEFI reports whether iPXE announced the EFI feature.
func (c Client) IPXEUnderEFI() bool {
	_, ok := c.IPXEFeatures[ipxeOptEFI]
	return ok
}

// Classify tells BIOS, UEFI, UEFI HTTP boot and iPXE clients apart from
// options 60, 77, 93 and 175. It never fails: malformed options are
// ignored, and a packet it cannot place is a plain DHCP client.
func Classify(m *dhcpv4.DHCPv4) Client {
	// Options 60 and 77 are the client's text: cleaned where they are
	// read, as they may be logged or recorded.
	c := Client{Kind: ClientDHCP, Vendor: cleanText(string(m.Options.Get(optVendor)), maxPeerText)}
	c.PXE = strings.HasPrefix(c.Vendor, "PXEClient")
	c.HTTP = strings.HasPrefix(c.Vendor, "HTTPClient")
	if a := m.Options.Get(optClientArch); len(a) >= 2 {
		c.Arch, c.HasArch = iana.Arch(uint16(a[0])<<8|uint16(a[1])), true
	} else if arch, ok := vendorArch(c.Vendor); ok {
		// "PXEClient:Arch:00007:UNDI:003016" carries the arch as well.
		c.Arch, c.HasArch = arch, true
	}
	if uc := m.Options.Get(optUserClass); uc != nil {
		for _, u := range m.UserClass() {
			c.UserClass = append(c.UserClass, cleanText(u, maxPeerText))
		}
	}
	if raw := m.Options.Get(optIPXE); raw != nil {
		c.IPXE = true
		c.IPXEFeatures, _ = ParseEncapsulated(raw)
	}
	for _, u := range c.UserClass {
		if u == "iPXE" {
			c.IPXE = true
		}
	}
	switch {
	case c.IPXE:
		c.Kind = ClientIPXE
	case !c.PXE && !c.HTTP && !c.HasArch:
		c.Kind = ClientDHCP
	case c.HTTP || c.Arch == iana.EFI_X86_64_HTTP:
		if c.HasArch && c.Arch != iana.EFI_X86_64_HTTP {
			c.Kind = ClientUnsupported
		} else {
			c.Kind = ClientUEFIHTTP
		}
	case c.HasArch && c.Arch == iana.INTEL_X86PC:
		c.Kind = ClientBIOS
	case c.HasArch && (c.Arch == iana.EFI_X86_64 || c.Arch == iana.EFI_BC):
		c.Kind = ClientUEFI
	case c.HasArch:
		c.Kind = ClientUnsupported
	default:
		// PXEClient without option 93: old BIOS PXE ROMs.
		c.Kind = ClientBIOS
	}
	return c
}

// vendorArch reads the architecture out of a PXE vendor class string.
func vendorArch(v string) (iana.Arch, bool) {
	parts := strings.Split(v, ":")
	for i := 0; i+1 < len(parts); i++ {
		if parts[i] == "Arch" {
			n, err := strconv.ParseUint(parts[i+1], 10, 16)
			if err != nil {
				return 0, false
			}
			return iana.Arch(n), true
		}
	}
	return 0, false
}

// ParseEncapsulated parses encapsulated DHCP options (the body of options
// 43 or 175): code, length, value, repeated; pad (0) is skipped and end
// (255) stops. Repeated codes are concatenated (RFC 3396). A truncated
// option is an error, returned with what was parsed before it.
func ParseEncapsulated(b []byte) (map[uint8][]byte, error) {
	out := map[uint8][]byte{}
	for i := 0; i < len(b); {
		code := b[i]
		i++
		switch code {
		case 0:
			continue
		case 255:
			return out, nil
		}
		if i >= len(b) {
			return out, fmt.Errorf("encapsulated option %d: no length", code)
		}
		n := int(b[i])
		i++
		if i+n > len(b) {
			return out, fmt.Errorf("encapsulated option %d: length %d past the end", code, n)
		}
		out[code] = append(out[code], b[i:i+n]...)
		i += n
	}
	return out, nil
}

// Encapsulate is the inverse of ParseEncapsulated for values up to 255
// bytes, in the order given.
func Encapsulate(opts ...EncapsulatedOption) []byte {
	var b []byte
	for _, o := range opts {
		v := o.Value
		if len(v) > 255 {
			v = v[:255]
		}
		b = append(b, o.Code, byte(len(v)))
		b = append(b, v...)
	}
	return b
}

// EncapsulatedOption is one sub-option.
type EncapsulatedOption struct {
	Code  uint8
	Value []byte
}
