package lab_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud/lab"
	"github.com/rackcloud/rackcloud/lab/labtest"
)

// TestLabWrongBMCPassword is the `make run` path of issue 10's done-when:
// in the lab, an operator sets a wrong BMC password through the API and
// the host shows one clear line within one poll interval (the change wakes
// the poller), without the observation changing the host's ETag.
func TestLabWrongBMCPassword(t *testing.T) {
	l, token := upLab(t, "rctest-labbmc", "10.79.0.1/24", 1)

	type host struct {
		ID    string `json:"id"`
		Power string `json:"power"`
		BMC   struct {
			Healthy bool   `json:"healthy"`
			Error   string `json:"error"`
		} `json:"bmc"`
	}
	call := func(method, path, etag string, body any) (host, string) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, err := json.Marshal(body)
			require.NoError(t, err)
			rd = strings.NewReader(string(b))
		}
		req, err := http.NewRequest(method, l.APIURL+path, rd)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		if etag != "" {
			req.Header.Set("If-Match", etag)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		require.Less(t, resp.StatusCode, 300, "%s %s: %s", method, path, b)
		var h host
		require.NoError(t, json.Unmarshal(b, &h))
		return h, resp.Header.Get("ETag")
	}

	n := l.Rack.Nodes[0]
	bmcBody := func(password string) map[string]any {
		return map[string]any{"address": n.IPMI.String(), "protocol": "ipmi", "username": n.User, "password": password}
	}
	h, _ := call(http.MethodPost, "/v1/hosts", "", map[string]any{"name": "node1", "bmc": bmcBody(n.Password)})
	labtest.Eventually(t, 4*lab.LabBMCPollInterval, 100*time.Millisecond, "the right password polled", func() (bool, string) {
		got, _ := call(http.MethodGet, "/v1/hosts/"+h.ID, "", nil)
		return got.BMC.Healthy && got.Power == "off", got.BMC.Error
	})

	_, etag := call(http.MethodGet, "/v1/hosts/"+h.ID, "", nil)
	_, etag = call(http.MethodPut, "/v1/hosts/"+h.ID+"/bmc", etag, bmcBody("not-"+n.Password))
	const want = "wrong user or password (IPMI, cipher suite 3)"
	labtest.Eventually(t, lab.LabBMCPollInterval, 50*time.Millisecond, "the wrong password shown", func() (bool, string) {
		got, _ := call(http.MethodGet, "/v1/hosts/"+h.ID, "", nil)
		return got.BMC.Error == want, got.BMC.Error
	})
	got, now := call(http.MethodGet, "/v1/hosts/"+h.ID, "", nil)
	require.False(t, got.BMC.Healthy)
	require.Equal(t, etag, now, "an observation does not change the ETag")
	require.NotContains(t, got.BMC.Error, n.Password)
}
