package ipmilan

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/types"
	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"
)

// TestKindOf sorts go-ipmi's failures as they come out of its handshake
// (joined with %v, so partly as text) and out of the socket.
func TestKindOf(t *testing.T) {
	netErr := func(errno syscall.Errno) error {
		return fmt.Errorf("udp dial failed, err: %w", &net.OpError{Op: "dial", Net: "udp", Err: os.NewSyscallError("connect", errno)})
	}
	for name, tc := range map[string]struct {
		err  error
		want error
	}{
		"rakp 2 hmac mismatch": {fmt.Errorf("connect20 failed, errs: \n%v", fmt.Errorf("validate rakp2: %w", client.ErrRAKPAuthentication)), ErrAuth},
		"unauthorized name":    {fmt.Errorf("rakp1 failed: %w", types.NewRmcpStatusError(types.RmcpStatusCodeUnauthorizedName)), ErrAuth},
		"unauthorized name as text": {fmt.Errorf("connect20 failed, errs: \n%v",
			fmt.Errorf("rakp1 failed: %w", types.NewRmcpStatusError(types.RmcpStatusCodeUnauthorizedName))), ErrAuth},
		"no cipher suite match":   {types.NewRmcpStatusError(types.RmcpStatusCodeNoCipherSuiteMatch), ErrCipher},
		"invalid auth alg (text)": {errors.New("RMCP+ Open Session failed: RMCP+ status 0x4: invalid authentication algorithm"), ErrCipher},
		"short open session reply": {errors.New("cmd: RMCP+ Open Session failed with cipher suite id (17), err: unpack session setup response failed, err: unpacked data is too short (2/8)"),
			ErrCipher},
		"insufficient resources": {types.NewRmcpStatusError(types.RmcpStatusCodeNoResToCreateSess), nil},
		"no route":               {netErr(syscall.ENETUNREACH), ErrUnreachable},
		"host unreachable":       {netErr(syscall.EHOSTUNREACH), ErrUnreachable},
		"unknown host":           {&net.DNSError{Err: "no such host", Name: "bmc.example", IsNotFound: true}, ErrUnreachable},
		"port closed":            {netErr(syscall.ECONNREFUSED), nil},
		"deadline":               {fmt.Errorf("exchange: %w", context.DeadlineExceeded), nil},
		"short reply":            {fmt.Errorf("unpack: %w", types.ErrUnpackedDataTooShort), ErrBadResponse},
		"completion code":        {&types.ResponseError{}, nil},
	} {
		t.Run(name, func(t *testing.T) {
			got := kindOf(tc.err)
			require.Equal(t, tc.want, got, "%v", tc.err)
			if tc.want != nil {
				require.ErrorIs(t, classify(tc.err), tc.want)
			}
		})
	}
}

// TestBootFlagsRequest checks the Set System Boot Options parameter 5
// bytes: valid, persistent (bit 6) and EFI (bit 5), then the device
// selector in bits 5:2 of the second byte.
func TestBootFlagsRequest(t *testing.T) {
	for name, tc := range map[string]struct {
		device          string
		persistent, efi bool
		want            []byte
	}{
		"pxe once legacy":    {"pxe", false, false, []byte{0x80, 0x04, 0, 0, 0}},
		"pxe persistent efi": {"PXE", true, true, []byte{0xe0, 0x04, 0, 0, 0}},
		"disk once efi":      {"disk", false, true, []byte{0xa0, 0x08, 0, 0, 0}},
		"no override":        {"none", true, false, []byte{0xc0, 0x00, 0, 0, 0}},
		"bios setup once":    {"bios", false, false, []byte{0x80, 0x18, 0, 0, 0}},
		"cdrom persistent":   {"cdrom", true, false, []byte{0xc0, 0x14, 0, 0, 0}},
	} {
		t.Run(name, func(t *testing.T) {
			p, err := bootFlags(tc.device, tc.persistent, tc.efi)
			require.NoError(t, err)
			require.Empty(t, cmp.Diff(tc.want, p.Pack()))
		})
	}
	_, err := bootFlags("floppy", false, false)
	require.Error(t, err)
}

// fullSDR is a Full Sensor Record (IPMI 2.0 table 43-1) for sensor 7,
// analog threshold, linear, M = m, B = 0, no exponents.
func fullSDR(unit, m byte, name string) []byte {
	body := []byte{0x20, 0x00, 0x07, 0x1d, 0x01, 0x7f, 0x40, 0x04, 0x01, 0, 0, 0, 0, 0, 0,
		0x00, unit, 0x00, 0x00, m, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0, 0, 0, 0xff, 0x00,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0 | byte(len(name))}
	body = append(body, name...)
	return append([]byte{0x00, 0x00, 0x51, 0x01, byte(len(body))}, body...)
}

// TestSensorConversion reads Full Sensor Records as go-ipmi parses them
// and converts raw readings with their factors.
func TestSensorConversion(t *testing.T) {
	for name, tc := range map[string]struct {
		sdr  []byte
		raw  uint8
		want *Reading
	}{
		"fan":         {fullSDR(18, 50, "Fan1"), 72, &Reading{Name: "Fan1", Kind: KindFan, Value: 3600, Unit: "RPM"}},
		"temperature": {fullSDR(1, 1, "CPU Temp"), 42, &Reading{Name: "CPU Temp", Kind: KindTemperature, Value: 42, Unit: "C"}},
		"power":       {fullSDR(6, 2, "Power"), 35, &Reading{Name: "Power", Kind: KindPower, Value: 70, Unit: "W"}},
		"volts":       {fullSDR(4, 1, "12V"), 12, nil}, // not one of ours
	} {
		t.Run(name, func(t *testing.T) {
			sdr, err := types.ParseSDR(tc.sdr, 0xffff)
			require.NoError(t, err)
			s := sensorOf(sdr)
			if tc.want == nil {
				require.Nil(t, s)
				return
			}
			require.NotNil(t, s)
			require.Equal(t, uint8(7), s.Number)
			got, ok := reading(s, tc.raw)
			require.True(t, ok)
			require.Equal(t, *tc.want, got)
		})
	}
}

// FuzzSDR: any SDR record go-ipmi accepts gives a sensor or none, never a
// panic.
func FuzzSDR(f *testing.F) {
	f.Add(fullSDR(18, 50, "Fan1"))
	f.Add(fullSDR(1, 1, ""))
	f.Add([]byte{0x00, 0x00, 0x51, 0x02, 0x00})
	f.Add([]byte{0x00, 0x00, 0x51, 0x01, 0x01, 0x20})
	f.Fuzz(func(t *testing.T, data []byte) {
		sdr, err := types.ParseSDR(data, 0xffff)
		if err != nil || sdr == nil || sdr.RecordHeader == nil {
			return
		}
		if s := sensorOf(sdr); s != nil {
			_, _ = reading(s, 0x80)
		}
	})
}

// FuzzShield: the shield never panics on a datagram, before or after it
// has session keys, and lets nothing through that go-ipmi would slice
// past its end.
func FuzzShield(f *testing.F) {
	f.Add([]byte{0x06, 0x00, 0xff, 0x07, 0x06, 0xc0, 1, 0, 0, 0, 1, 0, 0, 0, 0x10, 0x00})
	f.Add([]byte{0x06, 0x00, 0xff, 0x07, 0x06, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x00, 0x00, 0x11})
	f.Add([]byte{0x06, 0x00, 0xff, 0x07, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x08})
	f.Add([]byte{0x06, 0x00, 0xff, 0x06})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, keyed := range []bool{false, true} {
			s := &shield{user: "admin", password: "secret", integAlg: types.IntegrityAlg_HMAC_SHA1_96, cryptAlg: types.CryptAlg_AES_CBC_128}
			if keyed {
				s.k1, s.k2 = make([]byte, 20), make([]byte, 20)
			}
			s.noteOut(pkt)
			_ = s.admit(pkt)
		}
	})
}
