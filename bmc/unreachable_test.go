package bmc_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/netns"
)

// unreachableEnv makes TestUnreachableInNamespace's helper run.
const unreachableEnv = "RACKCLOUD_BMC_UNREACHABLE_HELPER"

// TestUnreachableInNamespace: a BMC address with no route to it gives
// "no route to <address>", over IPMI and Redfish. The test binary runs
// again inside a network namespace of its own that has only loopback and
// a bridge, so the kernel refuses the address at once and nothing leaves
// the machine.
func TestUnreachableInNamespace(t *testing.T) {
	labtest.Need(t, "ip", "ipmitool")
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	ctx := ctxT(t, 2*time.Minute)
	n, err := netns.New(ctx, fmt.Sprintf("rctest-bmcnr-%d", os.Getpid()), netip.MustParsePrefix("10.98.0.1/24"))
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.Close()) })
	cmd := n.Command(ctx, os.Args[0], "-test.run=^TestUnreachableHelper$", "-test.v")
	cmd.Env = append(os.Environ(), unreachableEnv+"=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "reason ipmi: no route to 10.99.0.1:623\n")
	require.Contains(t, string(out), "reason redfish: no route to 10.99.0.1:443\n")
}

// TestUnreachableHelper runs only inside TestUnreachableInNamespace's
// namespace.
func TestUnreachableHelper(t *testing.T) {
	if os.Getenv(unreachableEnv) == "" {
		t.Skip("run by TestUnreachableInNamespace")
	}
	e := newManager(t, bmc.Config{Timeout: 5 * time.Second})
	for _, p := range []rackcloud.BMCProtocol{rackcloud.BMCIPMI, rackcloud.BMCRedfish} {
		c, err := e.m.Client(bmc.Endpoint{Protocol: p, Address: "10.99.0.1", Username: "admin", Password: bmc.NewSecret("pw-unreachable")})
		require.NoError(t, err)
		_, err = c.PowerState(context.Background())
		require.ErrorIs(t, err, bmc.ErrUnreachable, "%v", err)
		require.False(t, strings.Contains(err.Error(), "pw-unreachable"))
		fmt.Printf("reason %s: %s\n", p, bmc.Reason(err))
	}
}
