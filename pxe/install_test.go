package pxe

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rackcloud/rackcloud"
)

// planProfiles is StaticProfiles that also hands out install plans.
type planProfiles struct {
	StaticProfiles
	plans map[string]string
	down  bool
}

func (p *planProfiles) Install(_ context.Context, mac string) ([]byte, error) {
	if p.down {
		return nil, ErrUnavailable
	}
	plan, ok := p.plans[mac]
	if !ok {
		return nil, fmt.Errorf("no plan: %w", rackcloud.ErrNotFound)
	}
	return []byte(plan), nil
}

func getWithToken(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var b [4096]byte
	n, _ := resp.Body.Read(b[:])
	return resp.StatusCode, string(b[:n])
}

// The install plan goes only to the current boot's installer, straight
// from the control plane (503 when it does not answer: never a cache);
// install reports are recorded like inventories.
func TestInstallPlanAndReports(t *testing.T) {
	const mac, other = "52:54:00:aa:09:01", "52:54:00:aa:09:02"
	src := &planProfiles{plans: map[string]string{mac: `{"host_id":"h1"}`}}
	s, err := New(unitConfig(t), Deps{Profiles: src, Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	url := srv.URL + "/boot/" + mac + "/install"

	code, _ := getWithToken(t, url, "")
	require.Equal(t, http.StatusForbidden, code)
	tok := bootToken(t, srv.URL, mac)
	code, _ = getWithToken(t, url, bootToken(t, srv.URL, other))
	require.Equal(t, http.StatusForbidden, code, "another host's boot token")
	code, body := getWithToken(t, url, tok)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"host_id":"h1"}`, body)
	code, _ = getWithToken(t, srv.URL+"/boot/"+other+"/install", bootToken(t, srv.URL, other))
	require.Equal(t, http.StatusNotFound, code, "no plan")
	src.down = true
	code, _ = getWithToken(t, url, tok)
	require.Equal(t, http.StatusServiceUnavailable, code)

	code, answer := postCallback(t, url, tok, `{"phase":"written","sha256":"sha256:00"}`)
	require.Equal(t, http.StatusAccepted, code, answer)
	code, _ = postCallback(t, url, "", `{"phase":"written"}`)
	require.Equal(t, http.StatusForbidden, code)
	var kinds []EventKind
	for _, e := range s.Timeline(mac) {
		kinds = append(kinds, e.Kind)
	}
	require.Contains(t, kinds, EventInstall)
}

// Heartbeats need the host's token, checked against the hash its profile
// carries: none, a wrong one, and a host without a token are refused
// with 403 and counted; a good one is recorded.
func TestHeartbeatToken(t *testing.T) {
	const mac, bare = "52:54:00:aa:0a:01", "52:54:00:aa:0a:02"
	src := &StaticProfiles{}
	require.NoError(t, src.Set(Profile{MAC: mac, State: rackcloud.HostProvisioning, HostTokenSHA256: tokenSum("host-secret")}))
	require.NoError(t, src.Set(Profile{MAC: bare, State: rackcloud.HostReady}))
	s, err := New(unitConfig(t), Deps{Profiles: src, Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	url := srv.URL + "/boot/" + mac + "/heartbeat"
	for _, c := range []struct{ url, token, reason string }{
		{url, "", tokenMissing},
		{url, "host-secreT", tokenWrong},
		{srv.URL + "/boot/" + bare + "/heartbeat", "host-secret", tokenNoHost},
		{srv.URL + "/boot/52:54:00:aa:0a:03/heartbeat", "host-secret", tokenNoHost},
	} {
		code, answer := postCallback(t, c.url, c.token, `{"host_id":"h1"}`)
		require.Equal(t, http.StatusForbidden, code, c.reason)
		require.Contains(t, answer, "heartbeat refused: "+c.reason)
	}
	require.Equal(t, 2.0, counterValue(s.m.callbacksRefused.WithLabelValues(tokenNoHost)))
	code, _ := postCallback(t, url, "host-secret", `[1]`)
	require.Equal(t, http.StatusBadRequest, code)
	code, answer := postCallback(t, url, "host-secret", `{"host_id":"h1","kernel":"6.1"}`)
	require.Equal(t, http.StatusAccepted, code, answer)
	evs := s.Timeline(mac)
	require.Equal(t, EventHeartbeat, evs[len(evs)-1].Kind)
	require.JSONEq(t, `{"host_id":"h1","kernel":"6.1"}`, string(evs[len(evs)-1].Data))
}
