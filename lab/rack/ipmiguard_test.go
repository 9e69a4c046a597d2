package rack_test

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/lab/rack"
)

// TestIPMIRefusesWeakSessions: the lab's BMC refuses what a hardened BMC
// refuses. Cipher suite 0 (no authentication) and IPMI 1.5 sessions without
// MD5 are refused whatever the password; cipher suite 3 and IPMI 1.5 MD5
// work with the right password only. Run against real ipmi_sim with the real
// ipmitool.
func TestIPMIRefusesWeakSessions(t *testing.T) {
	r := startRack(t, rack.Config{Nodes: 1, Virtual: true})
	ctx := ctxT(t, 2*time.Minute)
	n := r.Nodes[0]
	run := func(password string, args ...string) (string, error) {
		// -N 1 -R 2: a refusal comes back at once; a hang would fail the
		// case, not stall the test.
		a := append([]string{"-H", n.IPMI.Addr().String(), "-p", fmt.Sprint(n.IPMI.Port()), "-U", n.User, "-E",
			"-N", "1", "-R", "2"}, args...)
		a = append(a, "chassis", "power", "status")
		cmd := exec.CommandContext(ctx, "ipmitool", a...)
		cmd.Env = append(os.Environ(), "IPMI_PASSWORD="+password)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, tc := range []struct {
		name     string
		password string
		args     []string
		ok       bool
		says     string // for a refusal
	}{
		{"suite 0 wrong password", "wrong-password", []string{"-I", "lanplus", "-C", "0"}, false, "no matching cipher suite"},
		{"suite 0 right password", n.Password, []string{"-I", "lanplus", "-C", "0"}, false, "no matching cipher suite"},
		{"suite 3 wrong password", "wrong-password", []string{"-I", "lanplus", "-C", "3"}, false, ""},
		{"suite 3 right password", n.Password, []string{"-I", "lanplus", "-C", "3"}, true, ""},
		{"ipmi 1.5 none", "wrong-password", []string{"-I", "lan", "-A", "NONE"}, false, ""},
		{"ipmi 1.5 clear text", n.Password, []string{"-I", "lan", "-A", "PASSWORD"}, false, ""},
		{"ipmi 1.5 md5 wrong password", "wrong-password", []string{"-I", "lan", "-A", "MD5"}, false, ""},
		{"ipmi 1.5 md5 right password", n.Password, []string{"-I", "lan", "-A", "MD5"}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(tc.password, tc.args...)
			if tc.ok {
				require.NoError(t, err, out)
				require.Contains(t, out, "Chassis Power is off")
				return
			}
			require.Error(t, err, out)
			require.NotContains(t, out, "Chassis Power is", "refused, not answered")
			require.Contains(t, out, tc.says)
		})
	}
}
