package bmc_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/bmc"
	"github.com/rackcloud/rackcloud/lab/rack"
)

// TestReasons: each real failure (wrong password against ipmi_sim and the
// lab's Redfish BMC, a closed port, a silent BMC, a slow one, an untrusted
// certificate, a cipher suite the BMC does not offer) gives one exact
// short line, stored as the BMC's health error, with the kind still
// testable by errors.Is and the detail in the error text and the log;
// the password appears in none of them.
func TestReasons(t *testing.T) {
	r := startRack(t, rack.Config{Nodes: 2, Virtual: true, Redfish: true})
	const timeout = 3 * time.Second
	e := newManager(t, bmc.Config{Timeout: timeout, RootCAs: r.CertPool()})
	ctx := ctxT(t, 5*time.Minute)
	n0, n1 := r.Nodes[0], r.Nodes[1]
	const secret = "sink-password-4711"
	wrongPW := func(ep bmc.Endpoint) bmc.Endpoint { ep.Password = bmc.NewSecret(secret); return ep }
	at := func(p rackcloud.BMCProtocol, addr string) bmc.Endpoint {
		return bmc.Endpoint{Protocol: p, Address: addr, Username: "admin", Password: bmc.NewSecret(secret)}
	}
	udpClosed, tcpClosed := closedPort(t, "udp"), closedPort(t, "tcp")
	udpSilent, tcpSilent := udpSink(t), tcpSink(t)

	for _, tc := range []struct {
		name  string
		mgr   *bmc.Manager
		ep    bmc.Endpoint
		fault rack.Fault
		kind  error
		want  string
	}{
		{"ipmi wrong password", e.m, wrongPW(ipmiEndpoint(n0)), rack.Fault{}, bmc.ErrAuth,
			"wrong user or password (IPMI, cipher suite 3)"},
		{"redfish wrong password", e.m, wrongPW(redfishEndpoint(n0)), rack.Fault{}, bmc.ErrAuth,
			"wrong user or password (Redfish)"},
		{"ipmi closed port", e.m, at(rackcloud.BMCIPMI, udpClosed), rack.Fault{}, bmc.ErrTimeout,
			"no answer from " + udpClosed + " in 3s"},
		{"redfish closed port", e.m, at(rackcloud.BMCRedfish, tcpClosed), rack.Fault{}, bmc.ErrUnreachable,
			"refused the connection at " + tcpClosed},
		{"ipmi silent", e.m, at(rackcloud.BMCIPMI, udpSilent), rack.Fault{}, bmc.ErrTimeout,
			"no answer from " + udpSilent + " in 3s"},
		{"redfish silent", e.m, at(rackcloud.BMCRedfish, tcpSilent), rack.Fault{}, bmc.ErrTimeout,
			"no answer from " + tcpSilent + " in 3s"},
		{"ipmi slow", e.m, ipmiEndpoint(n1), rack.Fault{Delay: 3 * timeout}, bmc.ErrTimeout,
			"no answer from " + n1.IPMI.String() + " in 3s"},
		{"redfish untrusted certificate", newManager(t, bmc.Config{Timeout: timeout}).m, redfishEndpoint(n0), rack.Fault{}, bmc.ErrTLS,
			"TLS: certificate not trusted (signed by an unknown authority)"},
		{"ipmi cipher suite not offered", newManager(t, bmc.Config{Timeout: timeout, CipherSuite: "17"}).m, ipmiEndpoint(n0), rack.Fault{}, bmc.ErrCipher,
			"the BMC does not offer IPMI cipher suite 17"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.mgr.Client(tc.ep)
			require.NoError(t, err)
			n1.SetFault(tc.fault)
			_, err = c.PowerState(ctx)
			n1.SetFault(rack.Fault{})
			require.ErrorIs(t, err, tc.kind)
			require.Equal(t, tc.want, bmc.Reason(err))
			require.Equal(t, tc.want, c.Health().Error, "the health error is the short line")
			require.NotContains(t, bmc.Reason(err), "\n")
			require.NotContains(t, err.Error(), tc.kind.Error()+": "+tc.kind.Error(), "the detail does not repeat its kind")
			for _, pw := range []string{secret, n0.Password} {
				require.NotContains(t, err.Error(), pw)
				require.NotContains(t, e.log.String(), pw, "no password in the log")
			}
		})
	}
	require.True(t, strings.Contains(e.log.String(), "Unable to establish IPMI v2"), "the detail is in the log")
}
