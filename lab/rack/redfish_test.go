package rack_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
	"github.com/rackcloud/rackcloud/lab/labtest"
	"github.com/rackcloud/rackcloud/lab/rack"
)

// Debian's Python, where python3-sushy lives (PATH may hold another one).
const debianPython = "/usr/bin/python3"

func redfishtool(ctx context.Context, n *rack.Node, password string, args ...string) (string, error) {
	a := append([]string{"-r", n.Redfish.String(), "-u", n.User, "-p", password, "-S", "Always", "-T", "10"}, args...)
	out, err := exec.CommandContext(ctx, "redfishtool", a...).CombinedOutput()
	return string(out), err
}

func redfishRack(t *testing.T) *rack.Rack {
	return startRack(t, rack.Config{Nodes: 2, Virtual: true, Redfish: true})
}

// TestRedfishTool drives the simulated Redfish BMC with DMTF's redfishtool
// (basic auth and sessions), including what it refuses.
func TestRedfishTool(t *testing.T) {
	labtest.Need(t, "redfishtool")
	r := redfishRack(t)
	ctx := ctxT(t, 60*time.Second)
	n := r.Nodes[0]

	out, err := redfishtool(ctx, n, n.Password, "-I", "1", "Systems", "get")
	require.NoError(t, err, out)
	var sys map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &sys), out)
	require.Equal(t, "Off", sys["PowerState"])
	require.Equal(t, n.Serial, sys["SerialNumber"])

	out, err = redfishtool(ctx, n, n.Password, "-I", "1", "Systems", "setBootOverride", "Continuous", "Pxe")
	require.NoError(t, err, out)
	require.Equal(t, rack.Boot{Device: rack.BootPXE, Persistent: true}, n.BootOverride())

	out, err = redfishtool(ctx, n, n.Password, "-A", "Session", "-I", "1", "Systems", "reset", "On")
	require.NoError(t, err, out)
	require.Equal(t, rackcloud.PowerOn, n.Power())
	require.Equal(t, rackcloud.PowerOff, r.Nodes[1].Power(), "only this node")
	require.Equal(t, rack.BootPXE, n.BootOverride().Device, "a continuous override stays")

	out, err = redfishtool(ctx, n, n.Password, "-I", "1", "Chassis", "Thermal")
	require.NoError(t, err, out)
	var th struct {
		Temperatures []struct{ ReadingCelsius int }
		Fans         []struct{ Reading int }
	}
	require.NoError(t, json.Unmarshal([]byte(out), &th), out)
	require.Equal(t, n.Sensors().TemperatureC, th.Temperatures[0].ReadingCelsius)
	require.Equal(t, n.Sensors().FanRPM, th.Fans[0].Reading)

	// The node's NIC, with the MAC QEMU gives it: the collection lists it
	// and the member has it (BMCs often write MACs in upper case).
	out, err = redfishtool(ctx, n, n.Password, "-I", "1", "Systems", "EthernetInterfaces", "list")
	require.NoError(t, err, out)
	require.Contains(t, out, "/redfish/v1/Systems/1/EthernetInterfaces/1")
	out, err = redfishtool(ctx, n, n.Password, "-I", "1", "Systems", "EthernetInterfaces", "-i", "1")
	require.NoError(t, err, out)
	var nic struct {
		MACAddress, PermanentMACAddress, LinkStatus string
		InterfaceEnabled                            bool
		SpeedMbps                                   int
	}
	require.NoError(t, json.Unmarshal([]byte(out), &nic), out)
	require.True(t, strings.EqualFold(n.MAC.String(), nic.MACAddress), "MACAddress %s, QEMU's %s", nic.MACAddress, n.MAC)
	require.True(t, strings.EqualFold(n.MAC.String(), nic.PermanentMACAddress), "PermanentMACAddress %s, QEMU's %s", nic.PermanentMACAddress, n.MAC)
	require.Equal(t, "LinkUp", nic.LinkStatus, "the node is on")
	require.True(t, nic.InterfaceEnabled)
	require.Equal(t, 1000, nic.SpeedMbps)

	out, err = redfishtool(ctx, n, n.Password, "-I", "1", "Managers", "get")
	require.NoError(t, err, out)
	require.Contains(t, out, `"ManagerType": "BMC"`)

	out, err = redfishtool(ctx, n, n.Password, "-I", "1", "Systems", "reset", "ForceOff")
	require.NoError(t, err, out)
	require.Equal(t, rackcloud.PowerOff, n.Power())

	// Refusals: a wrong password, a reset type the BMC does not offer.
	out, err = redfishtool(ctx, n, "wrong", "-I", "1", "Systems", "get")
	require.Error(t, err, out)
	out, err = redfishtool(ctx, n, "wrong", "-A", "Session", "-I", "1", "Systems", "get")
	require.Error(t, err, out)
	out, err = redfishtool(ctx, n, n.Password, "-I", "1", "Systems", "reset", "Nmi")
	require.Error(t, err, out)
	require.Equal(t, rackcloud.PowerOff, n.Power())
}

// TestRedfishSushy drives the simulated Redfish BMC with OpenStack's sushy
// (the library Ironic uses), verifying TLS against the rack's CA.
func TestRedfishSushy(t *testing.T) {
	if err := exec.Command(debianPython, "-c", "import sushy").Run(); err != nil {
		t.Fatalf("python3-sushy is not installed for %s (run lab/install.sh): %v", debianPython, err)
	}
	r := redfishRack(t)
	ctx := ctxT(t, 90*time.Second)
	n := r.Nodes[1]
	sushy := func(step string) map[string]any {
		t.Helper()
		cmd := exec.CommandContext(ctx, debianPython, "testdata/sushy_check.py", n.RedfishURL, n.User, n.Password, r.CAFile(), step)
		cmd.Env = pythonEnv()
		out, err := cmd.Output()
		var ee *exec.ExitError
		if err != nil && errors.As(err, &ee) {
			t.Fatalf("sushy %s: %v\n%s", step, err, ee.Stderr)
		}
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(out, &m), string(out))
		return m
	}
	got := sushy("read")
	require.Equal(t, "PowerState.OFF", got["power_state"])
	require.Equal(t, n.Serial, got["serial"])
	require.Equal(t, map[string]any{strings.ToUpper(n.MAC.String()): "State.ENABLED"}, got["nics"], "sushy sees QEMU's MAC")
	require.EqualValues(t, n.Sensors().TemperatureC, got["temperature_c"])
	require.EqualValues(t, 0, got["fan_rpm"])
	require.Equal(t, "1.0.0", got["manager_firmware"])

	got = sushy("pxe-on")
	require.Equal(t, "BootSource.PXE", got["boot_target"])
	require.Equal(t, "PowerState.ON", got["power_state"])
	require.Equal(t, rackcloud.PowerOn, n.Power())
	require.Equal(t, 1, n.Starts())
	require.Equal(t, rack.BootNone, n.BootOverride().Device, "the one-shot override was used")
	on := n.Sensors()
	require.EqualValues(t, on.FanRPM, got["fan_rpm"])
	require.EqualValues(t, on.PowerWatts, got["watts"])

	got = sushy("off")
	require.Equal(t, "PowerState.OFF", got["power_state"])
	require.Equal(t, rackcloud.PowerOff, n.Power())

	// A wrong password fails in sushy too.
	cmd := exec.CommandContext(ctx, debianPython, "testdata/sushy_check.py", n.RedfishURL, n.User, "wrong", r.CAFile(), "read")
	cmd.Env = pythonEnv()
	out, err := cmd.CombinedOutput()
	require.Error(t, err, string(out))
	require.Contains(t, string(out), "401")
}

// TestRedfishHTTP checks the protocol details clients rely on: TLS with
// the rack's CA, auth, sessions, ETags, errors, faults.
func TestRedfishHTTP(t *testing.T) {
	r := redfishRack(t)
	n := r.Nodes[0]
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: r.CertPool()}}}
	t.Cleanup(cl.CloseIdleConnections)
	do := func(method, path, body string, hdr map[string]string) (*http.Response, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, n.RedfishURL+path, strings.NewReader(body))
		require.NoError(t, err)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := cl.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp, m
	}
	basic := func() map[string]string {
		req, _ := http.NewRequest("GET", "/", nil)
		req.SetBasicAuth(n.User, n.Password)
		return map[string]string{"Authorization": req.Header.Get("Authorization")}
	}

	resp, root := do("GET", "/redfish/v1/", "", nil)
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "1.6.0", root["RedfishVersion"])

	resp, _ = do("GET", "/redfish/v1/Systems/1", "", nil)
	require.Equal(t, 401, resp.StatusCode)

	resp, _ = do("POST", "/redfish/v1/SessionService/Sessions", `{"UserName":"admin","Password":"nope"}`, nil)
	require.Equal(t, 401, resp.StatusCode)
	resp, _ = do("POST", "/redfish/v1/SessionService/Sessions", `{"UserName":`, nil)
	require.Equal(t, 400, resp.StatusCode)

	resp, _ = do("POST", "/redfish/v1/SessionService/Sessions", fmt.Sprintf(`{"UserName":%q,"Password":%q}`, n.User, n.Password), nil)
	require.Equal(t, 201, resp.StatusCode)
	tok := map[string]string{"X-Auth-Token": resp.Header.Get("X-Auth-Token")}
	loc := resp.Header.Get("Location")
	require.NotEmpty(t, tok["X-Auth-Token"])

	resp, sys := do("GET", "/redfish/v1/Systems/1", "", tok)
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, "Off", sys["PowerState"])
	tag := resp.Header.Get("ETag")
	require.NotEmpty(t, tag)

	// A stale ETag is refused and changes nothing.
	resp, _ = do("PATCH", "/redfish/v1/Systems/1", `{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Once"}}`,
		map[string]string{"X-Auth-Token": tok["X-Auth-Token"], "If-Match": `W/"stale"`})
	require.Equal(t, 412, resp.StatusCode)
	require.Equal(t, rack.BootNone, n.BootOverride().Device)
	// Bad values are refused and change nothing.
	resp, _ = do("PATCH", "/redfish/v1/Systems/1", `{"Boot":{"BootSourceOverrideTarget":"Floppy"}}`, tok)
	require.Equal(t, 400, resp.StatusCode)
	resp, _ = do("PATCH", "/redfish/v1/Systems/1", `{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Sometimes"}}`, tok)
	require.Equal(t, 400, resp.StatusCode)
	require.Equal(t, rack.BootNone, n.BootOverride().Device)
	resp, _ = do("PATCH", "/redfish/v1/Systems/1", `{"Boot":{"BootSourceOverrideTarget":"Hdd","BootSourceOverrideEnabled":"Once"}}`,
		map[string]string{"X-Auth-Token": tok["X-Auth-Token"], "If-Match": tag})
	require.Equal(t, 200, resp.StatusCode)
	require.Equal(t, rack.Boot{Device: rack.BootDisk}, n.BootOverride())

	resp, _ = do("POST", "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", `{"ResetType":"Explode"}`, basic())
	require.Equal(t, 400, resp.StatusCode)
	resp, _ = do("GET", "/redfish/v1/Nothing", "", basic())
	require.Equal(t, 404, resp.StatusCode)
	resp, _ = do("DELETE", "/redfish/v1/Systems/1", "", basic())
	require.Equal(t, 405, resp.StatusCode)

	// A lying BMC and a BMC that talks nonsense.
	n.SetFault(rack.Fault{ReportPower: rackcloud.PowerOn})
	_, sys = do("GET", "/redfish/v1/Systems/1", "", basic())
	require.Equal(t, "On", sys["PowerState"])
	n.SetFault(rack.Fault{RedfishPowerState: "Banana"})
	_, sys = do("GET", "/redfish/v1/Systems/1", "", basic())
	require.Equal(t, "Banana", sys["PowerState"])
	n.SetFault(rack.Fault{})

	// Logout ends the session.
	resp, _ = do("DELETE", loc, "", tok)
	require.Equal(t, 204, resp.StatusCode)
	resp, _ = do("GET", "/redfish/v1/Systems/1", "", tok)
	require.Equal(t, 401, resp.StatusCode)

	// Without the rack's CA the certificate is not trusted.
	_, err := (&http.Client{Timeout: 5 * time.Second}).Get(n.RedfishURL + "/redfish/v1/")
	require.Error(t, err)
	require.FileExists(t, r.CAFile())
	_, err = os.ReadFile(r.CAFile())
	require.NoError(t, err)
}

// pythonEnv drops the CA bundle variables: python-requests lets
// REQUESTS_CA_BUNDLE override the CA file sushy passes as verify=.
func pythonEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "REQUESTS_CA_BUNDLE=") || strings.HasPrefix(kv, "CURL_CA_BUNDLE=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}
