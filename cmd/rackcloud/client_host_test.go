package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBMCStatus: the host table's BMC column says ok, - or pending, or why
// the BMC fails, shortened for the table at a word boundary.
func TestBMCStatus(t *testing.T) {
	for name, tc := range map[string]struct {
		host map[string]any
		want string
	}{
		"no BMC":  {map[string]any{"name": "h"}, "-"},
		"healthy": {map[string]any{"bmc": map[string]any{"healthy": true}}, "ok"},
		"pending": {map[string]any{"bmc": map[string]any{"healthy": false, "error": ""}}, "pending"},
		"wrong password": {map[string]any{"bmc": map[string]any{"healthy": false,
			"error": "wrong user or password (IPMI, cipher suite 3)"}}, "wrong user or password (IPMI, cipher..."},
		"timeout": {map[string]any{"bmc": map[string]any{"healthy": false,
			"error": "no answer from 127.0.0.1:1 in 20s"}}, "no answer from 127.0.0.1:1 in 20s"},
		"long word": {map[string]any{"bmc": map[string]any{"healthy": false,
			"error": "refused the connection at bmc-with-a-very-long-name.rack1.example:443"}}, "refused the connection at..."},
	} {
		got := bmcStatus(tc.host)
		require.Equal(t, tc.want, got, name)
		require.LessOrEqual(t, len([]rune(got)), bmcStatusWidth, name)
	}
}

func TestDoing(t *testing.T) {
	for name, tc := range map[string]struct {
		host map[string]any
		want string
	}{
		"idle": {map[string]any{"name": "h"}, "-"},
		"waiting": {map[string]any{"task": map[string]any{"kind": "host.enroll", "step": "await-inventory", "waiting_for": "inventory"}},
			"enroll: await-inventory (waits for inventory)"},
		"running": {map[string]any{"task": map[string]any{"kind": "host.enroll", "step": "pxe-power-on"}}, "enroll: pxe-power-on"},
		"failed": {map[string]any{"failure": map[string]any{"reason": "bmc_refused", "step": "pxe-power-on",
			"detail": "wrong user or password (IPMI, cipher suite 3)"}},
			"bmc_refused in pxe-power-on: wrong user or..."},
	} {
		if got := doing(tc.host); got != tc.want {
			t.Errorf("%s: doing = %q, want %q", name, got, tc.want)
		}
	}
}
