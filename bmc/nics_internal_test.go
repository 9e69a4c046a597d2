package bmc

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
)

func TestNICOf(t *testing.T) {
	for name, tc := range map[string]struct {
		in   redfishNIC
		want NIC
		ok   bool
	}{
		"upper case": {redfishNIC{ID: "1", Name: "NIC 1", MACAddress: "52:54:00:AA:01:0F", SpeedMbps: 1000, InterfaceEnabled: true},
			NIC{Name: "NIC 1", MAC: "52:54:00:aa:01:0f", SpeedMbps: 1000, Enabled: true}, true},
		"dashes, current over permanent": {redfishNIC{ID: "NIC.Slot.3-1-1", MACAddress: "B0-7B-25-00-00-01", PermanentMACAddress: "b0:7b:25:00:00:99"},
			NIC{Name: "NIC.Slot.3-1-1", MAC: "b0:7b:25:00:00:01"}, true},
		"permanent only": {redfishNIC{ID: "eth0", Name: "eth0", PermanentMACAddress: "b0:7b:25:00:00:99", StatusEnabled: true},
			NIC{Name: "eth0", MAC: "b0:7b:25:00:00:99", Enabled: true}, true},
		"zeros fall back": {redfishNIC{ID: "2", MACAddress: "00:00:00:00:00:00", PermanentMACAddress: "02:00:00:00:00:02"},
			NIC{Name: "2", MAC: "02:00:00:00:00:02"}, true},
		"no MAC":         {redfishNIC{ID: "3", Name: "unused", MACAddress: "00:00:00:00:00:00"}, NIC{}, false},
		"negative speed": {redfishNIC{ID: "4", MACAddress: "02:00:00:00:00:04", SpeedMbps: -1}, NIC{Name: "4", MAC: "02:00:00:00:00:04"}, true},
	} {
		t.Run(name, func(t *testing.T) {
			got, ok, err := nicOf(tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.ok, ok)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("nicOf (-want +got):\n%s", d)
			}
		})
	}
	for _, bad := range []string{"zz", "52:54:00:aa:01", "52:54:00:aa:01:0f:00:11", "banana"} {
		_, _, err := nicOf(redfishNIC{ID: "1", MACAddress: bad})
		require.ErrorIs(t, err, ErrBadResponse, bad)
		require.Contains(t, err.Error(), bad)
	}
}

// FuzzNICOf: whatever a BMC reports, nicOf does not panic, and a NIC it
// keeps has a normalised MAC.
func FuzzNICOf(f *testing.F) {
	f.Add("52:54:00:AA:01:0F", "", 1000, true)
	f.Add("", "b0-7b-25-00-00-99", 0, false)
	f.Add("00:00:00:00:00:00", "zz", -5, false)
	f.Fuzz(func(t *testing.T, mac, perm string, speed int, enabled bool) {
		nic, ok, err := nicOf(redfishNIC{ID: "x", MACAddress: mac, PermanentMACAddress: perm, SpeedMbps: speed, InterfaceEnabled: enabled})
		if err != nil || !ok {
			return
		}
		norm, err := rackcloud.NormalizeMAC(nic.MAC)
		if err != nil || norm != nic.MAC {
			t.Fatalf("MAC %q is not normalised (%q, %v)", nic.MAC, norm, err)
		}
		if nic.SpeedMbps < 0 {
			t.Fatalf("speed %d", nic.SpeedMbps)
		}
	})
}
