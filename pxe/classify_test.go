package pxe

import (
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/stretchr/testify/require"
)

var testMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0xaa, 0x01, 0x01}

func discover(t testing.TB, opts ...dhcpv4.Option) *dhcpv4.DHCPv4 {
	t.Helper()
	mods := []dhcpv4.Modifier{}
	for _, o := range opts {
		mods = append(mods, dhcpv4.WithOption(o))
	}
	d, err := dhcpv4.NewDiscovery(testMAC, mods...)
	require.NoError(t, err)
	return d
}

func arch(n uint16) dhcpv4.Option {
	return dhcpv4.OptGeneric(optClientArch, []byte{byte(n >> 8), byte(n)})
}

func TestClassify(t *testing.T) {
	ipxeOpts := Encapsulate(EncapsulatedOption{Code: 0x13, Value: []byte{1}}, EncapsulatedOption{Code: 0x15, Value: []byte{1}})
	ipxeEFI := Encapsulate(EncapsulatedOption{Code: 0x13, Value: []byte{1}}, EncapsulatedOption{Code: ipxeOptEFI, Value: []byte{1}})
	tests := map[string]struct {
		opts    []dhcpv4.Option
		kind    ClientKind
		netboot bool
		efi     bool
	}{
		"OVMF PXE": {opts: []dhcpv4.Option{
			dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016"), arch(7),
			dhcpv4.OptGeneric(optClientGUID, append([]byte{0}, make([]byte, 16)...)),
		}, kind: ClientUEFI, netboot: true},
		"EFI BC PXE": {opts: []dhcpv4.Option{dhcpv4.OptClassIdentifier("PXEClient:Arch:00009:UNDI:003016"), arch(9)}, kind: ClientUEFI, netboot: true},
		"BIOS PXE ROM": {opts: []dhcpv4.Option{dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001"), arch(0)},
			kind: ClientBIOS, netboot: true},
		"BIOS PXE arch only in vendor class": {opts: []dhcpv4.Option{dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")},
			kind: ClientBIOS, netboot: true},
		"old PXE ROM without arch": {opts: []dhcpv4.Option{dhcpv4.OptClassIdentifier("PXEClient")}, kind: ClientBIOS, netboot: true},
		"iPXE ROM under SeaBIOS": {opts: []dhcpv4.Option{
			dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001"), arch(0),
			dhcpv4.OptUserClass("iPXE"), dhcpv4.OptGeneric(optIPXE, ipxeOpts),
		}, kind: ClientIPXE, netboot: true},
		"iPXE under EFI": {opts: []dhcpv4.Option{
			dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003010"), arch(7),
			dhcpv4.OptUserClass("iPXE"), dhcpv4.OptGeneric(optIPXE, ipxeEFI),
		}, kind: ClientIPXE, netboot: true, efi: true},
		"iPXE with only option 175": {opts: []dhcpv4.Option{dhcpv4.OptGeneric(optIPXE, ipxeOpts)}, kind: ClientIPXE, netboot: true},
		"iPXE with only user class": {opts: []dhcpv4.Option{dhcpv4.OptUserClass("iPXE")}, kind: ClientIPXE, netboot: true},
		"UEFI HTTP boot": {opts: []dhcpv4.Option{dhcpv4.OptClassIdentifier("HTTPClient:Arch:00016:UNDI:003001"), arch(16)},
			kind: ClientUEFIHTTP, netboot: true},
		"UEFI HTTP boot arch only": {opts: []dhcpv4.Option{arch(16)}, kind: ClientUEFIHTTP, netboot: true},
		"ARM64 HTTP boot":          {opts: []dhcpv4.Option{dhcpv4.OptClassIdentifier("HTTPClient:Arch:00019"), arch(19)}, kind: ClientUnsupported},
		"ARM64 PXE":                {opts: []dhcpv4.Option{dhcpv4.OptClassIdentifier("PXEClient:Arch:00011:UNDI:003000"), arch(11)}, kind: ClientUnsupported},
		"busybox udhcpc":           {opts: []dhcpv4.Option{dhcpv4.OptClassIdentifier("udhcp 1.35.0")}, kind: ClientDHCP},
		"no options":               {kind: ClientDHCP},
		"truncated arch option":    {opts: []dhcpv4.Option{dhcpv4.OptGeneric(optClientArch, []byte{7})}, kind: ClientDHCP},
		"garbage option 175":       {opts: []dhcpv4.Option{dhcpv4.OptGeneric(optIPXE, []byte{0x13, 9, 1})}, kind: ClientIPXE, netboot: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := Classify(discover(t, tc.opts...))
			require.Equal(t, tc.kind, c.Kind)
			require.Equal(t, tc.netboot, c.NetBoot())
			require.Equal(t, tc.efi, c.IPXEUnderEFI())
		})
	}
}

func TestParseEncapsulated(t *testing.T) {
	tests := map[string]struct {
		in      []byte
		want    map[uint8][]byte
		wantErr bool
	}{
		"empty":          {in: nil, want: map[uint8][]byte{}},
		"two options":    {in: []byte{0x13, 1, 1, 176, 1, 1}, want: map[uint8][]byte{0x13: {1}, 176: {1}}},
		"pad and end":    {in: []byte{0, 0, 0x13, 1, 1, 255, 9, 9}, want: map[uint8][]byte{0x13: {1}}},
		"concatenated":   {in: []byte{1, 2, 'a', 'b', 1, 1, 'c'}, want: map[uint8][]byte{1: []byte("abc")}},
		"no length":      {in: []byte{0x13}, want: map[uint8][]byte{}, wantErr: true},
		"past the end":   {in: []byte{0x13, 1, 1, 0x24, 5, 1}, want: map[uint8][]byte{0x13: {1}}, wantErr: true},
		"zero length ok": {in: []byte{0x24, 0}, want: map[uint8][]byte{0x24: nil}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseEncapsulated(tc.in)
			require.Equal(t, tc.wantErr, err != nil, "err = %v", err)
			require.Empty(t, cmp.Diff(tc.want, got))
		})
	}
	round := []EncapsulatedOption{{Code: 176, Value: []byte{1}}, {Code: 0x13, Value: []byte("x")}}
	got, err := ParseEncapsulated(Encapsulate(round...))
	require.NoError(t, err)
	require.Equal(t, map[uint8][]byte{176: {1}, 0x13: []byte("x")}, got)
}
