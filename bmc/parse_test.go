package bmc

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/stmcginnis/gofish/common"
)

func TestParsePowerState(t *testing.T) {
	for in, want := range map[string]rackcloud.PowerState{
		"Chassis Power is on\n":  rackcloud.PowerOn,
		"Chassis Power is off\n": rackcloud.PowerOff,
		"Get HPM.x Capabilities request failed, compcode = c9\nChassis Power is on\n": rackcloud.PowerOn,
		"On":          rackcloud.PowerOn,
		"Off":         rackcloud.PowerOff,
		"PoweringOn":  rackcloud.PowerOn,
		"PoweringOff": rackcloud.PowerOff,
		" on ":        rackcloud.PowerOn,
		"OFF":         rackcloud.PowerOff,
	} {
		got, err := ParsePowerState(in)
		require.NoError(t, err, "%q", in)
		require.Equal(t, want, got, "%q", in)
	}
	for _, in := range []string{"", "Banana", "Chassis Power is sideways", "Chassis Power Control: Up/On", "onn"} {
		got, err := ParsePowerState(in)
		require.ErrorIs(t, err, ErrBadResponse, "%q", in)
		require.Equal(t, rackcloud.PowerUnknown, got)
	}
}

func FuzzParsePowerState(f *testing.F) {
	f.Add("Chassis Power is on\n")
	f.Add("PoweringOff")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := ParsePowerState(s)
		if err != nil && !errors.Is(err, ErrBadResponse) {
			t.Fatalf("%q: %v", s, err)
		}
		if err == nil && st != rackcloud.PowerOn && st != rackcloud.PowerOff {
			t.Fatalf("%q: state %q", s, st)
		}
	})
}

func TestClassifyIPMIText(t *testing.T) {
	for in, want := range map[string]ipmiClass{
		"Error in open session response message : invalid authentication algorithm\n\nError: Unable to establish IPMI v2 / RMCP+ session": ipmiCipher,
		"Error: Unable to establish IPMI v2 / RMCP+ session":                                                                              ipmiSession,
		"RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session":                                                      ipmiAuth,
		"RAKP 2 message indicates an error : unauthorized name\nError: Unable to establish IPMI v2":                                       ipmiAuth,
		"Error: Unable to establish LAN session":                                                                                          ipmiSession,
		"Get Auth Capabilities error\nError: Unable to get Channel Authentication Capabilities":                                           ipmiUnreachable,
		"No response from remote controller":                                                                                              ipmiUnreachable,
		"Set Boot Device to pxe":                                                                                                          ipmiOther,
		"":                                                                                                                                ipmiOther,
	} {
		require.Equal(t, want, classifyIPMIText(in), "%q", in)
	}
}

func FuzzClassifyIPMIText(f *testing.F) {
	f.Add("Error: Unable to establish IPMI v2 / RMCP+ session")
	f.Fuzz(func(t *testing.T, s string) {
		if c := classifyIPMIText(s); c < ipmiOther || c > ipmiUnreachable {
			t.Fatalf("%q: class %d", s, c)
		}
	})
}

func TestClassifyRedfish(t *testing.T) {
	for name, tc := range map[string]struct {
		err  error
		want error
	}{
		"401":     {&common.Error{HTTPReturnedStatusCode: 401}, ErrAuth},
		"404":     {&common.Error{HTTPReturnedStatusCode: 404}, ErrUnsupported},
		"text401": {errors.New("failed to set power state: 401: Unauthorized"), ErrAuth},
		// Seen in a full run: a slow BMC on port 40155 read as a refused
		// password because the URL's port holds "401".
		"timeout on port 40155":   {errors.New(`provider: gofish: failed to retrieve some items: [{"link":"/redfish/v1/Systems","error":"Get \"https://127.0.0.1:40155/redfish/v1/Systems\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"}]` + "\n\t* failed to get power state"), ErrTimeout},
		"port 40155 is not a 401": {errors.New(`Get "https://127.0.0.1:40155/redfish/v1/Systems": EOF`), nil},
		"status 401 in text":      {errors.New(`GET https://10.0.0.1:443/redfish/v1/Systems returned 401`), ErrAuth},
		"refused":                 {errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), ErrUnreachable},
		"x509":                    {errors.New("tls: failed to verify certificate: x509: certificate signed by unknown authority"), ErrTLS},
		"json":                    {errors.New("invalid character 'x' looking for beginning of value"), ErrBadResponse},
		"other":                   {errors.New("something else"), nil},
	} {
		require.Equal(t, tc.want, classifyRedfish(tc.err), name)
	}
}

func TestParseSDR(t *testing.T) {
	out := `CPU Temp         | 01h | ok  |  3.1 | 42 degrees C
Fan1             | 02h | ok  | 29.1 | 4800 RPM
Power            | 03h | ok  | 21.1 | 120 Watts
12V              | 04h | ok  |  7.1 | 12.10 Volts
Fan2             | 05h | ns  | 29.2 | No Reading
Inlet Temp       | 06h | ok  | 55.1 | 21.50 degrees C
garbage line
|||| x y
`
	want := []Sensor{
		{Name: "CPU Temp", Kind: SensorTemperature, Value: 42, Unit: "C"},
		{Name: "Fan1", Kind: SensorFan, Value: 4800, Unit: "RPM"},
		{Name: "Power", Kind: SensorPower, Value: 120, Unit: "W"},
		{Name: "Inlet Temp", Kind: SensorTemperature, Value: 21.5, Unit: "C"},
	}
	if d := cmp.Diff(want, parseSDR(out)); d != "" {
		t.Fatal(d)
	}
	require.Empty(t, parseSDR(""))
}

func FuzzParseSDR(f *testing.F) {
	f.Add("CPU Temp | 01h | ok | 3.1 | 42 degrees C\n")
	f.Fuzz(func(t *testing.T, s string) {
		for _, x := range parseSDR(s) {
			if x.Name == "" || x.Unit == "" || x.Kind == "" {
				t.Fatalf("%q: %+v", s, x)
			}
		}
	})
}

func TestParseColonKV(t *testing.T) {
	kv := parseColonKV("Device ID                 : 0\nFirmware Revision         : 9.08\nSystem GUID   : efcdab89-6745-23a1\nno colon\n")
	require.Equal(t, "9.08", kv["Firmware Revision"])
	require.Equal(t, "efcdab89-6745-23a1", kv["System GUID"])
}

func TestEndpointValidate(t *testing.T) {
	ok := Endpoint{Protocol: rackcloud.BMCIPMI, Address: "10.0.0.1", Username: "admin"}
	require.NoError(t, ok.validate())
	h, p, err := ok.hostPort()
	require.NoError(t, err)
	require.Equal(t, "10.0.0.1", h)
	require.Equal(t, DefaultIPMIPort, p)
	rf := Endpoint{Protocol: rackcloud.BMCRedfish, Address: "bmc.example", Username: "u"}
	_, p, err = rf.hostPort()
	require.NoError(t, err)
	require.Equal(t, DefaultRedfishPort, p)
	for name, ep := range map[string]Endpoint{
		"protocol": {Protocol: "snmp", Address: "10.0.0.1", Username: "u"},
		"no host":  {Protocol: rackcloud.BMCIPMI, Address: ":623", Username: "u"},
		"port":     {Protocol: rackcloud.BMCIPMI, Address: "10.0.0.1:99999", Username: "u"},
		"port txt": {Protocol: rackcloud.BMCIPMI, Address: "10.0.0.1:ipmi", Username: "u"},
		"user":     {Protocol: rackcloud.BMCIPMI, Address: "10.0.0.1"},
	} {
		require.ErrorIs(t, ep.validate(), rackcloud.ErrInvalid, name)
	}
}

func TestBackoff(t *testing.T) {
	min, max := time.Second, time.Minute
	for n := 1; n < 20; n++ {
		d := backoff(n, min, max)
		require.GreaterOrEqual(t, d, time.Duration(float64(min)*0.8), "n=%d", n)
		require.LessOrEqual(t, d, time.Duration(float64(max)*1.2), "n=%d", n)
	}
	require.Less(t, backoff(1, min, max), backoff(6, min, max))
}

func TestResultLabels(t *testing.T) {
	for kind, label := range map[error]string{
		nil: "ok", ErrAuth: "auth", ErrCipher: "cipher", ErrUnreachable: "unreachable", ErrTimeout: "timeout",
		ErrTLS: "tls", ErrBadResponse: "bad_response", ErrPowerMismatch: "power_mismatch",
		ErrUnsupported: "unsupported", ErrBackoff: "backoff", ErrBusy: "busy", ErrClosed: "closed",
	} {
		var err error
		if kind != nil {
			err = &Error{BMC: "ipmi://x", Op: "op", Kind: kind}
		}
		require.Equal(t, label, result(err))
	}
}

func TestHostRecord(t *testing.T) {
	rec := rackcloud.BMC{Address: "10.0.0.9:623", Protocol: rackcloud.BMCIPMI, Username: "admin", Password: "pw-123"}
	ep := EndpointOf(rec)
	require.Equal(t, "ipmi://10.0.0.9:623", ep.String())
	require.Equal(t, "pw-123", ep.Password.Reveal())
	Health{Healthy: false, Error: "bmc ipmi://10.0.0.9:623 power-status: BMC did not answer in time"}.Mark(&rec)
	require.False(t, rec.Healthy)
	require.Contains(t, rec.Error, "did not answer")
	Health{Healthy: true, Error: "stale"}.Mark(&rec)
	require.True(t, rec.Healthy)
	require.Empty(t, rec.Error)
}

// TestReasonFor covers the short lines of failures the lab cannot make
// without sending traffic off the machine (no route, DNS) and the rest
// of the kinds.
func TestReasonFor(t *testing.T) {
	rc := reasonCtx{protocol: rackcloud.BMCRedfish, address: "10.0.0.9:443", op: "sensors", timeout: 20 * time.Second}
	for _, tc := range []struct {
		kind error
		err  error
		want string
	}{
		{ErrUnreachable, &net.OpError{Op: "dial", Err: syscall.ENETUNREACH}, "no route to 10.0.0.9:443"},
		{ErrUnreachable, &net.OpError{Op: "dial", Err: syscall.EHOSTUNREACH}, "no route to 10.0.0.9:443"},
		{ErrUnreachable, &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, "refused the connection at 10.0.0.9:443"},
		{ErrUnreachable, &net.DNSError{Name: "bmc1.example", Err: "no such host"}, "cannot resolve bmc1.example"},
		{ErrTimeout, nil, "no answer from 10.0.0.9:443 in 20s"},
		{ErrUnsupported, nil, "sensors not supported by the BMC"},
		{ErrBadResponse, fmt.Errorf("%w: power state %q", ErrBadResponse, "Banana"), `the BMC answered nonsense: power state "Banana"`},
		{nil, errors.New("2 errors occurred:\n\t* provider: ipmitool: boom\n\t* no Opener implementations found\n\n"), "2 errors occurred:"},
		{nil, errors.New(strings.Repeat("x", 300)), strings.Repeat("x", 117) + "..."},
	} {
		require.Equal(t, tc.want, reasonFor(tc.kind, rc, tc.err))
	}
}
